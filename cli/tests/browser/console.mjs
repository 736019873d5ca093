// Drives the console page in headless Chromium: waits for the service's
// live stage and rates, clicks "roll back" (answering the reason prompt),
// waits for the stage to change, and saves a screenshot.
// Usage: node console.mjs URL SERVICE SCREENSHOT.png
import { chromium } from 'playwright-core';

const [url, service, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  await page.goto(url);
  const row = page.locator(`tr[data-service="${service}"]`);
  await row.locator('.track[data-stage="dual_relay_primary"]').waitFor({ timeout: 15000 });
  // Live rates arrive from the producer's metrics within a few seconds.
  await page.waitForFunction((name) => {
    const cell = document.querySelector(`tr[data-service="${name}"] .rate-relay`);
    return cell && Number(cell.textContent.replace(/[^0-9]/g, '')) > 0;
  }, service, { timeout: 20000 });
  const relayRate = await row.locator('.rate-relay').textContent();
  page.once('dialog', (dialog) => dialog.accept('browser test'));
  await row.locator('button.rollback').click();
  await page.locator(`tr[data-service="${service}"] .track[data-stage="relay"]`).waitFor({ timeout: 15000 });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ok: true, relayRate }));
} finally {
  await browser.close();
}
