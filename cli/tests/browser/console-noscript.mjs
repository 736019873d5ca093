// Drives the console page in headless Chromium with JavaScript disabled:
// opens it with a named token (`/?token=`), reads the scrape targets'
// states, advances the service through the plain HTML form (a reason, then
// the confirmation page with the evidence, then confirm), and rolls it back
// (a reason); after each post the browser follows the 303 back to the page,
// which says what happened. Prints what it saw as one JSON line.
// Usage: node console-noscript.mjs URL SERVICE TOKEN
import { chromium } from 'playwright-core';

const [url, service, token] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  const dialogs = [];
  page.on('dialog', (dialog) => { dialogs.push(dialog.message()); dialog.dismiss(); });
  const stageOf = async () => page.locator(`tr[data-service="${service}"] .track`).getAttribute('data-stage');
  await page.goto(`${url}?token=${encodeURIComponent(token)}`);
  const row = () => page.locator(`tr[data-service="${service}"]`);
  await row().waitFor({ timeout: 15000 });
  const stages = [await stageOf()];
  // The targets are listed once scraped (every second): reload until then.
  const deadline = Date.now() + 15000;
  while (await page.locator('#targets li').count() === 0) {
    if (Date.now() > deadline) throw new Error('no scrape target listed');
    await page.waitForTimeout(200);
    await page.reload();
  }
  const targets = (await page.locator('#targets').textContent()).trim();
  // Without script the table is the server's: no script-made buttons.
  const scriptButtons = await page.locator('button.advance, button.rollback').count();

  // Advance: a reason, then the evidence, then confirm.
  await row().locator('form.advance-form input[name=reason]').fill('evidence checked without script');
  await Promise.all([page.waitForURL(/\/services\/.*\/advance$/, { timeout: 15000 }),
                     row().locator('form.advance-form button').click()]);
  const evidence = {
    sha256: (await page.locator('#sha256').textContent()).trim(),
    verdict: (await page.locator('#verdict').textContent()).trim(),
    sourceCounts: (await page.locator('#source-counts').textContent()).trim(),
    gate: (await page.locator('#gate').textContent()).trim(),
  };
  const changedBeforeConfirm = await (async () => {
    const check = await context.newPage();
    await check.goto(url);
    const stage = await check.locator(`tr[data-service="${service}"] .track`).getAttribute('data-stage');
    await check.close();
    return stage;
  })();
  await Promise.all([page.waitForURL(/\/\?result=/, { timeout: 15000 }), page.locator('button.confirm').click()]);
  const advanced = (await page.locator('#message').textContent()).trim();
  const advancedOk = await page.locator('#message.ok').count();
  stages.push(await stageOf());

  // Roll back: a reason, made at once.
  await row().locator('form.rollback-form input[name=reason]').fill('drill without script');
  await Promise.all([page.waitForURL(/\/\?result=/, { timeout: 15000 }),
                     row().locator('form.rollback-form button').click()]);
  const rolledBack = (await page.locator('#message').textContent()).trim();
  stages.push(await stageOf());
  console.log(JSON.stringify({ ok: true, stages, targets, scriptButtons, evidence, changedBeforeConfirm,
                               advanced, advancedOk, rolledBack, dialogs }));
} finally {
  await browser.close();
}
