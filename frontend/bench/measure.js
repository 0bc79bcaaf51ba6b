// Page weight (bytes on the wire, headers included, per Accept-Encoding) and the time from
// navigation start until the Monaco editor shows text: cold cache, five fresh browser contexts
// each, median reported. Needs playwright-core (npm) and Debian's chromium (no browser download);
// against a running `pe serve --static-dir dist`:
//   NODE_PATH=/path/to/node_modules BASE=http://127.0.0.1:8090 node frontend/bench/measure.js
const { chromium } = require('playwright-core');

const BASE = process.env.BASE || 'http://127.0.0.1:8090';

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'],
  });
  for (const encoding of ['br', 'gzip']) {
    const times = [];
    let weight = 0;
    let requests = 0;
    for (let i = 0; i < 5; i++) {
      const context = await browser.newContext({
        viewport: { width: 1400, height: 900 },
        extraHTTPHeaders: { 'Accept-Encoding': encoding },
      });
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      let bytes = 0;
      let n = 0;
      cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; n += 1; });
      await page.goto(`${BASE}/`);
      const ready = await page.waitForFunction(
        () => document.querySelector('[data-testid=editor] .monaco-editor .view-lines') && performance.now(),
        null,
        { polling: 'raf' },
      );
      times.push(Math.round(await ready.jsonValue()));
      await page.waitForLoadState('networkidle');
      if (i === 0) { weight = bytes; requests = n; }
      await context.close();
    }
    times.sort((a, b) => a - b);
    console.log(`${encoding}: ${requests} requests, ${(weight / 1024).toFixed(0)} KiB on the wire; ` +
      `editor ready after ${times.join(', ')} ms (median ${times[2]})`);
  }
  await browser.close();
})();
