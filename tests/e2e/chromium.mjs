// Debian's Chromium, headless, as every e2e script here starts it: a fake camera playing
// `camera` (a Y4M file) when given, permission prompts answered yes, no background traffic.
import { chromium } from 'playwright-core';

export function launchChromium({ camera, https = false } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      ...(camera ? ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
        `--use-file-for-fake-video-capture=${camera}`] : []),
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run',
      ...(https ? ['--ignore-certificate-errors'] : []),
    ],
  });
}

// Collects what the server's Content-Security-Policy blocked: anything there fails a run.
export function watchForBlockedCode(page) {
  const blocked = [];
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) blocked.push(message.text());
  });
  return blocked;
}
