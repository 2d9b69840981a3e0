// Associate page scenarios in Debian's Chromium (playwright-core), against a
// real agent synced from a real hub. Started by tests/blackbox/test_browser.py,
// which passes the URLs, the token and the hub's pid in the environment.
'use strict';
const { chromium } = require('playwright-core');
const assert = require('assert/strict');
const path = require('path');

const API = process.env.TS_API;            // http://127.0.0.1:PORT
const TOKEN = process.env.TS_TOKEN;
const HUB_PID = Number(process.env.TS_HUB_PID);
const SHOTS = process.env.TS_SHOTS || '';   // directory for screenshots, or ''

async function scan(code) {
  const r = await fetch(API + '/api/v1/scan', {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + TOKEN, 'Content-Type': 'application/json' },
    body: JSON.stringify({ code }),
  });
  assert.equal(r.status, 200, 'scan answered ' + r.status);
  return r.json();
}

async function clear() {
  const r = await fetch(API + '/api/v1/session/clear', {
    method: 'POST', headers: { 'Authorization': 'Bearer ' + TOKEN },
  });
  assert.equal(r.status, 200, 'clear answered ' + r.status);
}

async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, name) });
}

// Every visible element lies inside the viewport horizontally, the page does
// not scroll sideways, and no text is clipped by its own box.
async function nothingCutOff(page, width) {
  const bad = await page.evaluate((w) => {
    const out = [];
    if (document.documentElement.scrollWidth > w) out.push('page scrolls sideways: ' + document.documentElement.scrollWidth);
    for (const e of document.querySelectorAll('#card *, header, #offline')) {
      const r = e.getBoundingClientRect();
      if (!r.width || getComputedStyle(e).visibility === 'hidden') continue;
      if (r.left < 0 || r.right > w + 0.5) out.push(e.tagName + ' "' + e.textContent.slice(0, 30) + '" spans ' + r.left + '..' + r.right);
      if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'hidden') out.push('clipped: ' + e.textContent.slice(0, 30));
    }
    return out;
  }, width);
  assert.deepEqual(bad, [], 'cut off at ' + width + 'px:\n' + bad.join('\n'));
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-quic', '--no-first-run', '--disable-sync'],
  });
  try {
    // 1. A scan shows the right name, interests and order, live.
    const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
    const external = [];
    page.on('request', (r) => { if (!r.url().startsWith(API)) external.push(r.url()); });
    await page.goto(API + '/');
    await page.getByText('Scan a loyalty card').waitFor();
    await scan('2000000000015');
    const card = page.locator('#card');
    await card.getByRole('heading', { name: 'Ada Lovelace' }).waitFor({ timeout: 5000 });
    const text = await card.innerText();
    assert.match(text, /gold/i);
    assert.match(text, /Trail Runner 42[\s\S]*viewed ×3 this week/);
    assert.match(text, /Rain Jacket[\s\S]*in online cart/);
    assert.match(text, /W-1001/, 'recent online order missing');
    assert.match(text, /from cache/);
    await shot(page, 'associate-page-1024x768.png');
    console.log('PASS scan shows name, interests and order');

    // 2. Without personalization consent only name and tier are shown.
    await scan('2000000000022');
    await card.getByRole('heading', { name: 'Bea Private' }).waitFor({ timeout: 5000 });
    const private_ = await card.innerText();
    assert.match(private_, /silver/i);
    assert.doesNotMatch(private_, /Trail Runner|Rain Jacket|viewed|points|W-/);
    console.log('PASS consent off shows only name and tier');

    // 3. Narrow side display: nothing cut off.
    const narrow = await browser.newPage({ viewport: { width: 800, height: 480 } });
    await narrow.goto(API + '/');
    await scan('2000000000015');
    await narrow.locator('#card').getByRole('heading', { name: 'Ada Lovelace' }).waitFor();
    await nothingCutOff(narrow, 800);
    await nothingCutOff(page, 1024);
    await shot(narrow, 'associate-page-800x480.png');
    console.log('PASS 800x480 shows the card without cutting anything off');

    // 4. Link down: the offline banner appears on its own.
    assert.equal(await page.locator('#offline').isVisible(), false, 'banner while online');
    process.kill(HUB_PID, 'SIGTERM');
    await page.locator('#offline').waitFor({ state: 'visible', timeout: 15000 });
    await scan('2000000000015');
    await page.getByText(/offline/).first().waitFor();
    await shot(page, 'associate-page-offline.png');
    console.log('PASS link down shows the offline banner');

    // 5. German and French follow the browser's language.
    for (const [locale, idle, cart] of [['de-DE', 'Kundenkarte scannen', 'im Online-Warenkorb'],
      ['fr-FR', 'Scannez une carte de fidélité', 'dans le panier en ligne']]) {
      await clear();
      const ctx = await browser.newContext({ locale, viewport: { width: 1024, height: 768 } });
      const p = await ctx.newPage();
      await p.goto(API + '/');
      await p.getByText(idle).waitFor();
      await scan('2000000000015');
      await p.getByText(cart).waitFor({ timeout: 5000 });
      assert.equal(await p.evaluate(() => document.documentElement.lang), locale.slice(0, 2));
      await ctx.close();
      console.log('PASS page in ' + locale);
    }

    assert.deepEqual(external, [], 'the page fetched something not from the agent');
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error('FAIL', e); process.exit(1); });
