// The admin page on a phone (390 CSS px wide), as a building manager uses it: logs in with the
// fake camera (a still photo of the administrator; the test server runs without PAD), checks
// the page fits the screen with targets a thumb can hit, enrols a newcomer from the camera
// (a thumbnail of the shot; the people list updates; the same shot twice counts once),
// edits a resident's access and gives the newcomer a visitor pass, and reads the attempts.
//
//   node admin.mjs BASE_URL CAMERA.y4m SCREENSHOT_DIR
//
// Exits 0 when the page behaved as a manager would expect, 1 with a reason otherwise.
import { launchChromium, watchForBlockedCode } from './chromium.mjs';

const [base, camera, shots] = process.argv.slice(2);
if (!base || !camera || !shots) {
  console.error('usage: node admin.mjs BASE_URL CAMERA.y4m SCREENSHOT_DIR');
  process.exit(2);
}

const browser = await launchChromium({ camera });
const page = await browser.newPage({
  viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2,
});
page.on('dialog', (dialog) => dialog.accept());
const blocked = watchForBlockedCode(page);

// what a phone user would trip over: sideways scrolling, small targets, small text, wrapping times
async function checkFitsThePhone(where) {
  const problems = await page.evaluate(() => {
    const found = [];
    const width = window.innerWidth;
    if (document.documentElement.scrollWidth > width) {
      found.push(`the page is ${document.documentElement.scrollWidth} px wide on a ${width} px screen`);
    }
    const visible = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
    for (const e of document.querySelectorAll('button, summary, input:not([type=checkbox]), textarea, a.button-link')) {
      if (!visible(e)) continue;
      const r = e.getBoundingClientRect();
      const label = (e.textContent || e.name || e.id).trim().slice(0, 30);
      if (r.height < 44) found.push(`"${label}" is ${Math.round(r.height)} px high`);
      if (r.right > width + 0.5) found.push(`"${label}" is cut off at the right (${Math.round(r.right)} px)`);
    }
    for (const e of document.querySelectorAll('input:not([type=checkbox]), textarea')) {
      if (visible(e) && parseFloat(getComputedStyle(e).fontSize) < 16) found.push(`${e.name || e.id} has ${getComputedStyle(e).fontSize} text`);
    }
    for (const t of document.querySelectorAll('.attempt time')) {
      const line = parseFloat(getComputedStyle(t).lineHeight) || 24;
      if (t.getBoundingClientRect().height > line * 1.5) found.push(`the time "${t.textContent}" wraps`);
    }
    const raw = document.body.innerText.match(/\b(not_recognized|rate_limited|pad_refused|no_face|login_disabled)\b/);
    if (raw) found.push(`a raw code is shown: ${raw[0]}`);
    return found;
  });
  if (problems.length) throw new Error(`${where}: ${problems.join('; ')}`);
  console.log(`${where}: fits a 390 px phone`);
}

const status = (id) => page.locator(`#${id}`).innerText();
try {
  await page.goto(`${base}/`);
  await page.waitForSelector('#login:not([disabled])', { timeout: 30_000 });
  await page.click('#login');
  await page.waitForURL(`${base}/lift`, { timeout: 30_000 });
  await page.goto(`${base}/admin`);
  await page.waitForSelector('#shoot:not([disabled])', { timeout: 30_000 });
  await checkFitsThePhone('the admin page');
  await page.screenshot({ path: `${shots}/admin-phone.png` });
  const attempts = await page.locator('.attempts').innerText();
  if (!/Logged in/.test(attempts) || !/Face not recognised/.test(attempts)) {
    throw new Error(`the attempts do not read in words: ${attempts}`);
  }
  await page.locator('.attempts').scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${shots}/admin-phone-attempts.png` });

  // enrol a newcomer: a thumbnail of the kept shot, and the people list shows them at once
  await page.fill('#name', 'newcomer');
  await page.click('#shoot');
  await page.waitForFunction(() => /Kept: newcomer now has 1 photo/.test(document.getElementById('status').textContent), null, { timeout: 30_000 });
  if (await page.locator('#shots img').count() !== 1) throw new Error('no thumbnail of the kept shot');
  await page.waitForSelector('.person[data-name="newcomer"]', { timeout: 5_000 });
  // the same still frame again: the server keeps one file and counts it once
  await page.click('#shoot');
  await page.waitForFunction(() => /not counted twice/.test(document.getElementById('status').textContent), null, { timeout: 30_000 });
  const newcomer = await page.locator('.person[data-name="newcomer"]').innerText();
  if (!/1 photo\b/.test(newcomer)) throw new Error(`the same shot was counted twice: ${newcomer}`);
  await page.locator('#shots').scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${shots}/admin-phone-enrolled.png` });

  // a resident's access, edited in place
  const resident = page.locator('.person[data-name="person01"]');
  await resident.locator('summary', { hasText: 'Change access' }).click();
  await resident.locator('.access-form input[name="display_name"]').fill('Ada');
  await resident.locator('.access-form input[name="home_floor"]').fill('2');
  await resident.locator('.access-form input[name="floors"]').fill('1, 2');
  await resident.locator('.access-form textarea[name="hours"]').fill('weekdays 07:00-20:00');
  await checkFitsThePhone('the access form');
  await resident.locator('.access-form button[type="submit"]').click();
  await page.waitForFunction(() => /Access for person01 is saved/.test(document.getElementById('people-status').textContent), null, { timeout: 10_000 });
  const summary = await page.locator('.person[data-name="person01"] .access-summary').innerText();
  if (summary !== 'Floors 1, 2 · weekdays 07:00-20:00 · home 2') throw new Error(`the access reads "${summary}"`);
  if (!/Ada/.test(await page.locator('.person[data-name="person01"] .person-name').innerText())) throw new Error('the name shown did not change');

  // a visitor pass for the newcomer
  const visitor = page.locator('.person[data-name="newcomer"]');
  await visitor.locator('summary', { hasText: 'Give a visitor pass' }).click();
  await visitor.locator('.pass-form input[name="floors"]').fill('2');
  await visitor.locator('.pass-form input[name="hours"]').fill('4');
  await visitor.locator('.pass-form button[type="submit"]').click();
  await page.waitForFunction(() => /newcomer has a pass for 4 hour/.test(document.getElementById('people-status').textContent), null, { timeout: 10_000 });
  const pass = await page.locator('.person[data-name="newcomer"] .pass').innerText();
  if (!/Pass: floor 2, until/.test(pass)) throw new Error(`the pass reads "${pass}"`);
  await checkFitsThePhone('the people after the changes');
  await page.locator('.person[data-name="newcomer"]').scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${shots}/admin-phone-people.png` });
  await page.screenshot({ path: `${shots}/admin-phone-full.png`, fullPage: true });
  if (blocked.length) throw new Error(`the Content-Security-Policy blocked: ${blocked.join('; ')}`);
  console.log('the admin page works on a phone');
} catch (error) {
  await page.screenshot({ path: `${shots}/admin-phone-failure.png`, fullPage: true }).catch(() => {});
  console.error(String(error && error.stack || error));
  await browser.close();
  process.exit(1);
}
await browser.close();
