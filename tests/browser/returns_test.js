// A returned sale on the associate page (issue 18) in Debian's Chromium
// (playwright-core): the customer's card lists the in-store order as returned,
// in English and in German. Started by tests/blackbox/test_browser_consent.py
// (TS_API, TS_TOKEN, TS_CODE: the customer's loyalty id, TS_RECEIPT: the sale).
'use strict';
const { chromium } = require('playwright-core');
const assert = require('assert/strict');

const API = process.env.TS_API;
const TOKEN = process.env.TS_TOKEN;

async function post(path) {
  const r = await fetch(API + path, {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + TOKEN, 'Content-Type': 'application/json' },
    body: path.endsWith('/scan') ? JSON.stringify({ code: process.env.TS_CODE }) : '{}',
  });
  assert.equal(r.status, 200, path + ' answered ' + r.status);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-quic', '--no-first-run', '--disable-sync'],
  });
  try {
    for (const [locale, word] of [['en-US', 'returned'], ['de-DE', 'zurückgegeben'], ['fr-FR', 'retournée']]) {
      const ctx = await browser.newContext({ locale, viewport: { width: 1024, height: 768 } });
      const page = await ctx.newPage();
      await page.goto(API + '/');
      await post('/api/v1/session/clear');
      await post('/api/v1/scan');
      const card = page.locator('#card');
      await card.getByText(word, { exact: false }).first().waitFor({ timeout: 5000 });
      const text = await card.innerText();
      assert.match(text, new RegExp(process.env.TS_RECEIPT), 'the order is not on the card');
      console.log(`PASS ${locale}: the card shows the sale as "${word}"`);
      await ctx.close();
    }
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error('FAIL', e); process.exit(1); });
