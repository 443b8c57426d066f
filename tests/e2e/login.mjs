// Logs in through facelift's real login page in Debian's Chromium, whose fake camera plays a
// Y4M file made from a photo, then (for an enrolled face) drives the lift panel.
//
//   node login.mjs BASE_URL CAMERA.y4m SCREENSHOT_DIR recognized|pad_refused|not_recognized|wait
//
// With the server's challenge (its default), "Log in" shows head turns to make while the page
// captures a burst: `recognized` needs a camera file in which the head turns; `pad_refused`
// expects a still photo of an enrolled face to be refused as not live.
// `wait`: a stranger presses "Log in" until the server makes them wait; the page must then
// count the wait down with "Log in" off.
//
// Exits 0 when the page behaved as a person would expect, 1 with a reason otherwise. Over
// https:// (the server's self-signed certificate, accepted as a phone's user accepts it once)
// it also checks that the page came over HTTP/2, as browsers speak it over TLS.
import { launchChromium, watchForBlockedCode } from './chromium.mjs';

const [base, camera, shots, expected] = process.argv.slice(2);
if (!base || !camera || !shots || !['recognized', 'pad_refused', 'not_recognized', 'wait'].includes(expected)) {
  console.error('usage: node login.mjs BASE_URL CAMERA.y4m SCREENSHOT_DIR recognized|pad_refused|not_recognized|wait');
  process.exit(2);
}

const https = base.startsWith('https://');
const browser = await launchChromium({ camera, https });
const page = await browser.newPage({ viewport: { width: 800, height: 900 }, ignoreHTTPSErrors: https });
const text = (selector) => page.locator(selector).innerText();
// the server's Content-Security-Policy allows no inline code: anything it blocks fails the run
const blocked = watchForBlockedCode(page);
try {
  await page.goto(`${base}/`);
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  if (https && protocol !== 'h2') throw new Error(`the page came over ${protocol}, not HTTP/2`);
  console.log(`login page over ${protocol}`);
  await page.waitForSelector('#login:not([disabled])', { timeout: 30_000 });
  await page.click('#login');

  if (expected === 'recognized') {
    // as a resident would: when the turn was not seen (the fake camera's loop and a busy
    // machine can put a burst at a bad phase of the clip), press "Log in" again, at most twice
    for (let attempt = 1; ; attempt += 1) {
      if (await page.locator('#login').getAttribute('data-pad') === 'challenge') {
        await page.waitForSelector('#instruction:not([hidden])', { timeout: 10_000 });
        console.log(`asked: ${await text('#instruction')}`);
        await page.screenshot({ path: `${shots}/login-challenge.png` });
      }
      await page.waitForFunction(
        () => location.pathname === '/lift' || /could not see a live face/.test(document.getElementById('status')?.textContent ?? ''),
        null,
        { timeout: 30_000 },
      );
      if (new URL(page.url()).pathname === '/lift') break;
      if (attempt === 3) throw new Error(`refused ${attempt} times: ${await text('#status')}`);
      console.log(`try ${attempt} refused: ${await text('#status')}; pressing "Log in" again`);
      await page.waitForSelector('#login:not([disabled])', { timeout: 30_000 });
      await page.click('#login');
    }
    await page.waitForURL(`${base}/lift`, { timeout: 30_000 });
    const car = (part) => `.car[data-lift="A"] ${part}`;
    await page.waitForFunction((sel) => document.querySelector(sel).textContent === '1', car('.floor-now'));
    await page.screenshot({ path: `${shots}/lift-panel.png` });
    await page.click('button[data-floor="2"]');
    await page.waitForFunction((sel) => document.querySelector(sel).textContent.startsWith('Going to floor 2'), car('.car-state'), { timeout: 10_000 });
    await page.screenshot({ path: `${shots}/lift-moving.png` });
    await page.waitForFunction(
      ([floor, state]) => document.querySelector(floor).textContent === '2'
        && document.querySelector(state).textContent === 'Ready'
        && /Lift A has arrived at floor 2/.test(document.getElementById('status').textContent),
      [car('.floor-now'), car('.car-state')],
      { timeout: 30_000 },
    );
    await page.screenshot({ path: `${shots}/lift-floor-2.png` });
    console.log(`logged in as ${await text('.who')}, floor now ${await text('.car .floor-now')}; ${await text('#status')}`);
  } else if (expected === 'pad_refused') {
    await page.waitForFunction(() => /could not see a live face/.test(document.getElementById('status').textContent), null, { timeout: 30_000 });
    await page.screenshot({ path: `${shots}/login-photo-refused.png` });
    if (new URL(page.url()).pathname !== '/') throw new Error(`left the login page for ${page.url()}`);
    console.log(`the photo was refused: ${await text('#status')}`);
  } else if (expected === 'wait') {
    const status = () => page.locator('#status').innerText();
    // the wait as the page shows it, read in the page in one step (null: no wait shown)
    const shownWait = () => page.evaluate(() => {
      const found = document.getElementById('status').textContent.match(/try again in (\d+) s/);
      return found ? Number(found[1]) : null;
    });
    let first = null;
    for (let presses = 1; ; presses += 1) {
      await page.waitForFunction(() => /Not recognised|try again in/.test(document.getElementById('status').textContent), null, { timeout: 30_000 });
      first = await shownWait();
      // a wait long enough to watch it count down; a probation budget that renews at the
      // turn of a minute can make the first waits a second or two, which the page may end
      // before they are read
      if (first !== null && first >= 4) break;
      // 5 failures make the address wait; with the challenge, live attempts are still decided
      // on probation, 6 a minute (12 more if a minute turns meanwhile)
      if (presses > 30) throw new Error('never made to wait long enough to watch');
      await page.waitForSelector('#login:not([disabled])', { timeout: 60_000 });
      await page.click('#login');
    }
    const seconds = async () => (await shownWait()) ?? 0;
    if (!(await page.locator('#login').isDisabled())) throw new Error('"Log in" stays on while waiting');
    await page.screenshot({ path: `${shots}/login-countdown.png` });
    await page.waitForTimeout(2_200);
    const later = await seconds();
    if (!(later < first)) throw new Error(`the countdown did not move: ${first} then ${later}`);
    if (!(await page.locator('#login').isDisabled())) throw new Error('"Log in" came back before the end');
    console.log(`counting down: ${first} s, then ${later} s, "Log in" off`);
  } else {
    await page.waitForFunction(() => /Not recognised/.test(document.getElementById('status').textContent), null, { timeout: 30_000 });
    await page.screenshot({ path: `${shots}/login-not-recognised.png` });
    if (new URL(page.url()).pathname !== '/') throw new Error(`left the login page for ${page.url()}`);
    console.log(`stayed on the login page: ${await text('#status')}`);
  }
  if (blocked.length) throw new Error(`the Content-Security-Policy blocked: ${blocked.join('; ')}`);
  console.log('nothing blocked by the Content-Security-Policy');
} catch (error) {
  await page.screenshot({ path: `${shots}/failure-${expected}.png` }).catch(() => {});
  console.error(`status line: ${await text('#status').catch(() => '(none)')}`);
  console.error(error.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
