// Consent at the till (issue 18) in Debian's Chromium (playwright-core): the
// associate opens the customer's choices with the C key, withdraws
// personalisation with the keyboard alone, and the card on screen loses its
// interests at once; the agent records it (the page key is its credential).
// Started by tests/blackbox/test_browser_consent.py (TS_API, TS_TOKEN).
'use strict';
const { chromium } = require('playwright-core');
const assert = require('assert/strict');

const API = process.env.TS_API;
const TOKEN = process.env.TS_TOKEN;

async function scan(code) {
  const r = await fetch(API + '/api/v1/scan', {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + TOKEN, 'Content-Type': 'application/json' },
    body: JSON.stringify({ code }),
  });
  assert.equal(r.status, 200, 'scan answered ' + r.status);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-quic', '--no-first-run', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
    await page.goto(API + '/');
    await page.getByText('Scan a loyalty card').waitFor();
    // Without a card there is nobody to record it for.
    await page.keyboard.press('c');
    await page.getByText('Scan the customer\u2019s card first').waitFor({ timeout: 5000 });

    await scan('2000000000015');
    const card = page.locator('#card');
    await card.getByRole('heading', { name: 'Ada Lovelace' }).waitFor({ timeout: 5000 });
    assert.match(await card.innerText(), /Trail Runner 42/);
    // Keyboard only: C opens the form with the focus on personalisation.
    await page.keyboard.press('c');
    const form = page.getByRole('form', { name: 'Customer\u2019s consent' });
    await form.waitFor({ timeout: 5000 });
    const personal = form.getByRole('checkbox', { name: /Personalised service/ });
    assert.equal(await personal.isChecked(), true, 'personalisation starts as the card says');
    assert.equal(await page.evaluate(() => document.activeElement.name), 'personalization',
      'the focus is not on the first choice');
    await page.keyboard.press('Space');           // withdraw personalisation
    await page.keyboard.press('Tab');
    await page.keyboard.press('Space');           // opt in to e-mail
    await page.keyboard.press('Enter');           // record
    await page.getByText('Consent recorded').waitFor({ timeout: 5000 });
    await card.getByText('No personalization consent: nothing more is shown.').waitFor({ timeout: 5000 });
    const text = await card.innerText();
    assert.match(text, /Ada Lovelace/);
    assert.doesNotMatch(text, /Trail Runner|Rain Jacket|viewed/, 'interests still shown');
    assert.equal(await form.isVisible(), false, 'the form stays open');
    const s = await (await fetch(API + '/api/v1/session')).json();
    assert.equal(s.card.consent, false, 'the agent\u2019s card still has consent');
    console.log('PASS consent control: keyboard only, recorded, the card empties at once');

    // The same in German and French.
    for (const [locale, button, title] of [['de-DE', /Einwilligung/, 'Einwilligung des Kunden'],
                                           ['fr-FR', /Consentement/, 'Consentement du client']]) {
      const ctx = await browser.newContext({ locale, viewport: { width: 800, height: 480 } });
      const p = await ctx.newPage();
      await p.goto(API + '/');
      await p.getByRole('button', { name: button }).click();
      await p.getByRole('form', { name: title }).waitFor({ timeout: 5000 });
      await ctx.close();
      console.log(`PASS consent control in ${locale}`);
    }
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => { console.error('FAIL', e); process.exit(1); });
