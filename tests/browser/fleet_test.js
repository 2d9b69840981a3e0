// The hub's fleet page (hub/page/fleet.*) in Debian's Chromium
// (playwright-core), against a real hub and a real agent: started by
// tests/blackbox/test_fleet.py, which passes the hub URL and a client
// certificate of the tenant, and stops the agent when asked ("@@agent-stop"
// out, "ok" in).
'use strict';
const { chromium } = require('playwright-core');
const assert = require('assert/strict');
const readline = require('readline');

const HUB = process.env.TS_HUB;          // https://localhost:PORT
const CERT = process.env.TS_CERT;        // PEM files of a tenant certificate
const KEY = process.env.TS_KEY;
const EVIL = process.env.TS_EVIL_CN;     // a terminal name that is markup
const SHOT = process.env.TS_SHOT || '';  // screenshot file, or ''

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(cmd) {
  process.stdout.write('@@' + cmd + '\n');
  const { value } = await lines.next();
  assert.equal(value, 'ok', cmd + ': ' + value);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-quic', '--no-first-run', '--disable-sync'],
  });
  try {
    // The test CA is not Chromium's; the client certificate is what opens the page.
    const ctx = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 1280, height: 600 },
      clientCertificates: [{ origin: HUB, certPath: CERT, keyPath: KEY }],
    });
    const page = await ctx.newPage();
    const alerts = [];
    page.on('dialog', (d) => { alerts.push(d.message()); d.dismiss(); });
    const resp = await page.goto(HUB + '/fleet');
    assert.equal(resp.status(), 200, 'the fleet page answered ' + resp.status());

    // 1. The polling terminal is listed with its health.
    const t01 = page.locator('tr[data-terminal="T01"]');
    await t01.waitFor({ timeout: 10000 });
    await page.waitForFunction(() => {
      const r = document.querySelector('tr[data-terminal="T01"]');
      return r && r.dataset.health === 'ok' && r.innerText.includes('0.1.0');
    }, null, { timeout: 10000 });
    const text = await t01.innerText();
    assert.match(text, /S001/);
    assert.match(text, /\bok\b/);
    assert.match(text, /\bup\b/, 'link state missing: ' + text);
    assert.match(text, /\d+ days/, 'certificate days missing: ' + text);
    assert.match(await page.locator('#summary').innerText(), /2 terminal\(s\)/);

    // 2. A name from a certificate is shown as text, never run as markup.
    const evil = page.locator('tbody tr').filter({ hasText: EVIL });
    await evil.waitFor({ timeout: 5000 });
    assert.equal(await page.locator('tbody img, tbody b, tbody script').count(), 0,
      'a certificate name became markup');
    assert.deepEqual(alerts, [], 'a certificate name ran script');
    if (SHOT) await page.screenshot({ path: SHOT });

    // 3. "Only terminals with a problem" hides the healthy one, not the other.
    await page.getByLabel('Only terminals with a problem').check();
    await t01.waitFor({ state: 'detached', timeout: 5000 });
    await evil.waitFor({ timeout: 5000 });
    await page.getByLabel('Only terminals with a problem').uncheck();
    await t01.waitFor({ timeout: 5000 });

    // 4. The sinks: the hub's sink "up" cannot reach its vendor, so the
    // purchase T01 posted waits there, failed once, none delivered.
    await page.waitForFunction(() => {
      const r = document.querySelector('#sinks tr[data-sink="up"]');
      if (!r) return false;
      const c = [...r.cells].map((td) => td.textContent);
      return c[1] === 'segment' && c[2] === '1' && c[4] === '0' && c[5] === '1' && c[6] === '0';
    }, null, { timeout: 20000 });
    assert.ok(await page.locator('#sinks tr[data-sink="up"].problem').count() === 1,
      'a sink with a failed item is not flagged');
    assert.match(await page.locator('#sinks tr[data-sink="up"]').innerText(), /0\.0\/s/);

    // 5. The terminal stops polling: its row turns stale without a reload.
    await ask('agent-stop');
    await page.waitForFunction(() => {
      const r = document.querySelector('tr[data-terminal="T01"]');
      return r && r.classList.contains('stale') && /stale/.test(r.dataset.health);
    }, null, { timeout: 30000 });
    assert.match(await t01.locator('td.health').innerText(), /stale/);
    assert.match(await page.locator('#summary').innerText(), /2 stale/);
    console.log('fleet page: lists terminals with their health and the sinks; T01 turned stale');
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
