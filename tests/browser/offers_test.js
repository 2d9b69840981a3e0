// Offers on the associate page in Debian's Chromium (playwright-core), against
// a real agent and hub (tests/blackbox/test_offers.py page_offers_in_chromium):
// the offers section in en/de/fr, an offer whose expiry passed while its card
// sat in the cache left out, a redemption by the POS taking it off the page,
// and the refusal of a second one shown.
'use strict';
const { chromium } = require('playwright-core');
const assert = require('assert/strict');

const API = process.env.TS_API;
const TOKEN = process.env.TS_TOKEN;
const SOON_MS = Number(process.env.TS_SOON_MS); // when the short offer expires (epoch ms)
const LOYALTY = '2000000000015';

async function post(path, body) {
  const r = await fetch(API + path, {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + TOKEN, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-quic', '--no-first-run', '--disable-sync'],
  });
  try {
    const heads = { en: 'Offers', de: 'Angebote', fr: 'Offres' };
    const pages = {};
    for (const lang of Object.keys(heads)) {
      const ctx = await browser.newContext({ locale: lang, viewport: { width: 1024, height: 768 } });
      pages[lang] = await ctx.newPage();
      await pages[lang].goto(API + '/');
    }
    assert.equal((await post('/api/v1/scan', { code: LOYALTY })).status, 200);
    for (const [lang, head] of Object.entries(heads)) {
      const offers = pages[lang].locator('#card .offers');
      await offers.getByText(head).waitFor({ timeout: 5000 });
      const text = await offers.innerText();
      assert.match(text, /SPRING10[\s\S]*10 % off a jacket/, lang + ': ' + text);
      // (Only while it has not expired yet: a slow start may pass its time.)
      if (Date.now() < SOON_MS - 1500)
        assert.match(text, /SOON1/, lang + ': the short offer is not shown before it expires');
    }
    console.log('PASS offers shown in en, de and fr');

    // The short offer's expiry passes while its card is in the cache: the
    // next time the card is shown, the page leaves it out.
    const en = pages.en;
    await new Promise((r) => setTimeout(r, Math.max(0, SOON_MS - Date.now()) + 200));
    const again1 = await post('/api/v1/scan', { code: LOYALTY });
    assert.equal(again1.status, 200);
    // The cached card still carries it: leaving it out is the page's doing.
    assert.ok(again1.body.card.offers.some((o) => o.code === 'SOON1'),
      'the cached card lost the short offer: ' + JSON.stringify(again1.body.card));
    const offers = en.locator('#card .offers');
    await en.waitForFunction(() => {
      const o = document.querySelector('#card .offers');
      return o && !/SOON1/.test(o.innerText);
    }, null, { timeout: 5000 });
    assert.match(await offers.innerText(), /SPRING10/);
    console.log('PASS an expired offer is left out of a cached card');

    // The POS redeems it: the page says so and the offer leaves the card.
    const r = await post('/api/v1/offers/redeem', { code: 'SPRING10', receipt: 'R-9' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await en.locator('#notice').getByText('Offer SPRING10 redeemed').waitFor({ timeout: 5000 });
    await en.waitForFunction(() => !document.querySelector('#card .offers'), null, { timeout: 5000 });
    const again = await post('/api/v1/offers/redeem', { code: 'SPRING10' });
    assert.equal(again.status, 409);
    await en.locator('#notice').getByText(/offer SPRING10 was already redeemed at store S001 on/)
      .waitFor({ timeout: 5000 });
    console.log('PASS redeemed offer leaves the page; the second redemption is refused on it');
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
