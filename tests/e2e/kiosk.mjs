// A lobby kiosk's page in Chromium at tablet size, driven as a resident would: the pairing
// link is opened once, "Start" is pressed, the camera board beside it (the device simulator,
// uploading signed photos over HTTP) shows the resident, and the page says which car comes
// ("Lift B to floor 7"), then returns to "Look at the camera" on its own; the next person is a
// stranger and is told so.
//
//   node kiosk.mjs BASE_URL KIOSK_NAME PAIRING_KEY SCREENSHOT_DIR
import { launchChromium, watchForBlockedCode } from './chromium.mjs';

const [base, kiosk, key, shots] = process.argv.slice(2);
if (!base || !kiosk || !key || !shots) {
  console.error('usage: node kiosk.mjs BASE_URL KIOSK_NAME PAIRING_KEY SCREENSHOT_DIR');
  process.exit(2);
}
const browser = await launchChromium();
const page = await browser.newPage({ viewport: { width: 800, height: 1280 }, hasTouch: true });
const blocked = watchForBlockedCode(page);
const shown = (id) => page.waitForSelector(`#${id}:not([hidden])`, { timeout: 30_000 });
const headline = () => page.locator('#kiosk-headline').innerText();
try {
  await page.goto(`${base}/kiosk/${kiosk}?key=${encodeURIComponent(key)}`);
  if (page.url() !== `${base}/kiosk/${kiosk}`) throw new Error(`the key stayed in the address bar: ${page.url()}`);
  await shown('kiosk-ready');
  const start = await page.locator('#kiosk-start').boundingBox();
  if (!start || start.height < 60) throw new Error('the Start button is not large');
  await page.screenshot({ path: `${shots}/kiosk-ready.png` });

  await page.click('#kiosk-start');
  await shown('kiosk-result');
  await page.waitForFunction(() => document.getElementById('kiosk-headline').textContent.startsWith('Lift '), null, { timeout: 30_000 });
  const booked = await headline();
  if (booked !== 'Lift B to floor 7') throw new Error(`the kiosk said "${booked}"`);
  console.log(`booked: ${booked}; ${await page.locator('#kiosk-detail').innerText()}`);
  await page.screenshot({ path: `${shots}/kiosk-booked.png` });

  // it keeps no one's session: back to the start on its own
  await shown('kiosk-ready');
  await page.screenshot({ path: `${shots}/kiosk-back.png` });

  await page.click('#kiosk-start');
  await shown('kiosk-result');
  await page.waitForFunction(() => document.getElementById('kiosk-headline').textContent === 'Sorry', null, { timeout: 30_000 });
  const why = await page.locator('#kiosk-detail').innerText();
  if (why !== 'Face not recognised.') throw new Error(`the stranger was told "${why}"`);
  console.log(`stranger: ${why}`);
  await page.screenshot({ path: `${shots}/kiosk-refused.png` });
  if (blocked.length) throw new Error(`the Content-Security-Policy blocked: ${blocked.join('; ')}`);
} catch (error) {
  await page.screenshot({ path: `${shots}/kiosk-failure.png`, fullPage: true }).catch(() => {});
  console.error(String(error && error.stack || error));
  await browser.close();
  process.exit(1);
}
await browser.close();
