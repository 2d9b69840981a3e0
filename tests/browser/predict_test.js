// The prediction hint on the associate page (issue 17) in Debian's Chromium
// (playwright-core), against a real agent synced from a real hub. Started by
// tests/blackbox/test_predictions.py page_shows_hint: Ada has Klaviyo
// predictions (top value, high churn, next order in 3 days) and consent; Bea
// has a Shopify RFM group but no personalization consent.
'use strict';
const { chromium } = require('playwright-core');
const assert = require('assert/strict');

const API = process.env.TS_API;
const TOKEN = process.env.TS_TOKEN;
const RAW = (process.env.TS_RAW || '').split(',').filter(Boolean);

async function scan(code) {
  const r = await fetch(API + '/api/v1/scan', {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + TOKEN, 'Content-Type': 'application/json' },
    body: JSON.stringify({ code }),
  });
  assert.equal(r.status, 200, 'scan answered ' + r.status);
}

async function clear() {
  const r = await fetch(API + '/api/v1/session/clear', {
    method: 'POST', headers: { 'Authorization': 'Bearer ' + TOKEN },
  });
  assert.equal(r.status, 200, 'clear answered ' + r.status);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-quic', '--no-first-run', '--disable-sync'],
  });
  try {
    for (const [locale, hint, bands] of [
      ['en-US', 'Loyal customer, not seen for a while', 'value top · churn risk high · next order due now'],
      ['de-DE', 'Treue Kundschaft, länger nicht gesehen', 'Wert Spitze · Abwanderungsrisiko hoch · nächste Bestellung jetzt fällig'],
      ['fr-FR', 'Client fidèle, pas vu depuis un moment', 'valeur premier rang · risque de départ élevé · prochaine commande maintenant'],
    ]) {
      const ctx = await browser.newContext({ locale, viewport: { width: 1024, height: 768 } });
      const page = await ctx.newPage();
      await page.goto(API + '/');
      await page.locator('#idle').waitFor();
      await scan('2000000000015');
      const card = page.locator('#card');
      await card.getByRole('heading', { name: 'Ada Lovelace' }).waitFor({ timeout: 5000 });
      const pr = card.locator('.prediction');
      await pr.waitFor({ timeout: 5000 });
      assert.equal(await pr.locator('.hint').textContent(), hint);
      assert.equal(await pr.locator('.bands').textContent(), bands);
      const from = await pr.locator('.fresh').textContent();
      assert.ok(from.includes('predictive_analytics.predicted_clv'), 'source shown: ' + from);
      const text = await card.textContent();
      for (const r of RAW) assert.ok(!text.includes(r), 'raw score ' + r + ' on the page');
      console.log('PASS hint in ' + locale + ': ' + hint);

      // Bea has no personalization consent: no hint, though the hub knows her RFM group.
      await scan('2000000000022');
      await card.getByRole('heading', { name: 'Bea Private' }).waitFor({ timeout: 5000 });
      assert.equal(await card.locator('.prediction').count(), 0, 'hint shown without consent');
      await clear();
      await ctx.close();
    }
    console.log('PASS no hint without consent');
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
