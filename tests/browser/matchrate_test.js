// The fleet page's match-rate table in Debian's Chromium (playwright-core),
// against the real hub of tests/blackbox/test_matchrate.py: the store's
// newest day with its exact shares, as the hub computed them.
'use strict';
const { chromium } = require('playwright-core');
const assert = require('assert/strict');

const HUB = process.env.TS_HUB;
const WANT = JSON.parse(process.env.TS_WANT); // [store, day, tills, transactions, identified, delivered]

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-quic', '--no-first-run', '--disable-sync'],
  });
  try {
    const ctx = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 1280, height: 600 },
      clientCertificates: [{ origin: HUB, certPath: process.env.TS_CERT, keyPath: process.env.TS_KEY }],
    });
    const page = await ctx.newPage();
    const resp = await page.goto(HUB + '/fleet');
    assert.equal(resp.status(), 200, 'the fleet page answered ' + resp.status());
    const row = page.locator('#match-rows tr[data-store="' + WANT[0] + '"]');
    await row.waitFor({ timeout: 10000 });
    const cells = await row.locator('td').allInnerTexts();
    assert.deepEqual(cells.map((c) => c.trim()), WANT, 'match rate row: ' + cells.join(' | '));
    await page.getByRole('heading', { name: 'Match rate' }).waitFor();
    console.log('PASS the fleet page shows the match rate');
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
