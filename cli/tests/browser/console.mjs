// Drives the console page in headless Chromium: waits for the service's
// live stage and rates, clicks "roll back" (answering the reason prompt),
// waits for the stage to change, opens the service's details, whose latest
// verify report is hostile (markup and script in its fields), and checks
// that no script ran and the markup is shown as text; saves a screenshot.
// Usage: node console.mjs URL SERVICE SCREENSHOT.png MARKUP
import { chromium } from 'playwright-core';

const [url, service, screenshot, markup] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  const dialogs = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    if (dialog.type() === 'prompt') dialog.accept('browser test'); else dialog.dismiss();
  });
  const violations = [];
  page.on('console', (message) => { if (message.type() === 'error') violations.push(message.text()); });
  await page.goto(url);
  const row = page.locator(`tr[data-service="${service}"]`);
  await row.locator('.track[data-stage="dual_relay_primary"]').waitFor({ timeout: 15000 });
  // Live rates arrive from the producer's metrics within a few seconds.
  await page.waitForFunction((name) => {
    const cell = document.querySelector(`tr[data-service="${name}"] .rate-relay`);
    return cell && Number(cell.textContent.replace(/[^0-9]/g, '')) > 0;
  }, service, { timeout: 20000 });
  const relayRate = await row.locator('.rate-relay').textContent();
  await row.locator('button.rollback').click();
  await page.locator(`tr[data-service="${service}"] .track[data-stage="relay"]`).waitFor({ timeout: 15000 });

  // The hostile report: its markup is text, on the row and in the details.
  await row.locator('a').first().click();
  await page.waitForFunction((text) => document.getElementById('report').textContent.includes(text), markup, { timeout: 15000 });
  await page.getByText(markup, { exact: false }).first().waitFor({ state: 'visible', timeout: 5000 });
  const gateReason = await row.locator('.why').last().textContent();
  const injected = await page.evaluate(() => ({
    pwned: window.__pwned ?? null,
    images: document.querySelectorAll('#services img, #detail img').length,
    scripts: document.querySelectorAll('#services script, #detail script').length,
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ok: true, relayRate, dialogs, injected, gateReason, violations }));
} finally {
  await browser.close();
}
