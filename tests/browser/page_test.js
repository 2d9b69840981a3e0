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

// Asks tests/blackbox/test_browser.py for something only it can do (restart
// the agent): one "@@command" line out, one answer line in.
const answers = [];
let waiting = null;
process.stdin.setEncoding('utf8');
let inbuf = '';
process.stdin.on('data', (d) => {
  inbuf += d;
  let i;
  while ((i = inbuf.indexOf('\n')) >= 0) {
    const line = inbuf.slice(0, i);
    inbuf = inbuf.slice(i + 1);
    if (waiting) { const w = waiting; waiting = null; w(line); } else answers.push(line);
  }
});
async function ask(cmd) {
  process.stdout.write('@@' + cmd + '\n');
  const line = answers.length ? answers.shift() : await new Promise((r) => { waiting = r; });
  assert.equal(line, 'ok', cmd + ': ' + line);
}

// WCAG 2.x contrast of every element that shows text against the first
// opaque background behind it: 4.5:1, or 3:1 for large text.
async function contrastFailures(page) {
  return page.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const bg = (e) => {
      for (; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const out = [];
    for (const e of document.querySelectorAll('body *')) {
      const own = Array.from(e.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own || !e.getClientRects().length) continue;
      const cs = getComputedStyle(e);
      const a = lum(rgb(cs.color)), b = lum(bg(e));
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      const size = parseFloat(cs.fontSize), bold = Number(cs.fontWeight) >= 700;
      const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
      if (ratio < need) out.push(e.tagName + ' "' + e.textContent.trim().slice(0, 30) + '" ' + ratio.toFixed(2));
    }
    return out;
  });
}

async function purchase(body) {
  return fetch(API + '/api/v1/purchases', {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + TOKEN, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
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
    assert.match(text, /W-1001[\s\S]*ready for pickup/, 'recent online order or its status missing');
    assert.match(await card.locator('.suggest').innerText(), /Trek Socks/,
      'the suggestion is not what a customer with the same interest bought');
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

    // 3a. Small, self-contained and accessible: landmarks, headings, contrast,
    //     focus order through the two key buttons.
    const raw = await (await fetch(API + '/')).arrayBuffer();
    assert.ok(raw.byteLength <= 50 * 1024, 'page is ' + raw.byteLength + ' bytes, over 50 KB');
    assert.doesNotMatch(Buffer.from(raw).toString(), /(src|href)=["']?(https?:)?\/\//, 'external asset');
    for (const role of ['banner', 'main', 'contentinfo']) {
      assert.equal(await page.getByRole(role).count(), 1, 'landmark ' + role);
    }
    assert.equal(await page.getByRole('heading', { level: 1 }).count(), 1, 'one h1');
    await page.getByRole('heading', { level: 2, name: 'Interests' }).waitFor();
    await page.getByRole('heading', { level: 2, name: 'Recent orders' }).waitFor();
    assert.deepEqual(await contrastFailures(page), [], 'contrast');
    assert.deepEqual(await contrastFailures(narrow), [], 'contrast at 800x480');
    await page.locator('body').focus();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'btn-prev', 'first tab stop');
    assert.notEqual(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), 'none',
      'focus is not visible');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'btn-clear', 'second tab stop');
    await page.evaluate(() => document.activeElement.blur());
    await page.getByText('Esc').first().waitFor();  // the keys are hinted on screen
    console.log('PASS accessible: landmarks, headings, contrast, focus order; ' + raw.byteLength + ' bytes');

    // 3b. Keys: P brings back the previous card, Esc clears it everywhere.
    await scan('2000000000022');
    await card.getByRole('heading', { name: 'Bea Private' }).waitFor({ timeout: 5000 });
    await page.keyboard.press('p');
    await card.getByRole('heading', { name: 'Ada Lovelace' }).waitFor({ timeout: 5000 });
    await page.getByText('Previous card (1 back)').waitFor();
    await page.keyboard.press('Escape');
    await page.getByText('Scan a loyalty card').waitFor({ timeout: 5000 });
    await narrow.getByText('Scan a loyalty card').waitFor({ timeout: 5000 });
    const after = await fetch(API + '/api/v1/session');
    assert.equal(after.status, 204, 'Esc did not clear the agent\'s session');
    console.log('PASS keys: P shows the previous card, Esc clears it in every tab');

    // 3c. Two tabs, and the agent restarting under them: "reconnecting", then
    //     the stream is back and both tabs show the next card.
    await scan('2000000000015');
    for (const p of [page, narrow]) {
      await p.locator('#card').getByRole('heading', { name: 'Ada Lovelace' }).waitFor({ timeout: 5000 });
    }
    await ask('agent-stop');
    for (const p of [page, narrow]) {
      await p.locator('#conn').waitFor({ state: 'visible', timeout: 10000 });
      assert.match(await p.locator('#conn').innerText(), /reconnecting/);
    }
    await shot(page, 'associate-page-reconnecting.png');
    await ask('agent-start');
    for (const p of [page, narrow]) {
      await p.locator('#conn').waitFor({ state: 'hidden', timeout: 15000 });
      // The restarted agent has no session: the old card must not linger.
      await p.getByText('Scan a loyalty card').waitFor({ timeout: 5000 });
    }
    await scan('2000000000015');
    for (const p of [page, narrow]) {
      await p.locator('#card').getByRole('heading', { name: 'Ada Lovelace' }).waitFor({ timeout: 5000 });
    }
    console.log('PASS two tabs follow the agent through a restart, showing "reconnecting"');

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

    // 6. A purchase for the customer on screen clears the card (the agent
    //    publishes `purchase`, then `clear`). The endpoint is another
    //    engineer's; wait a little for it, then fail saying so.
    //    The POS says when the sale opened: the card scanned since is the buyer.
    await clear();
    const opened = new Date(Date.now() - 1000).toISOString();
    await scan('2000000000015');
    await card.getByRole('heading', { name: 'Ada Lovelace' }).waitFor({ timeout: 5000 });
    const body = { receipt: 'S001-T01-000123', currency: 'EUR', total: 59.9, tax: 9.56,
      transaction_started_at: opened,
      products: [{ sku: 'SKU-SOCK', name: 'Wool Socks', quantity: 1, price: 59.9 }] };
    let r = await purchase(body);
    for (let i = 0; r.status === 404 && i < 20; i++) {
      await new Promise((ok) => setTimeout(ok, 500));
      r = await purchase(body);
    }
    assert.notEqual(r.status, 404, 'POST /api/v1/purchases does not exist in this agent (404 for 10 s)');
    assert.equal(r.status, 202, 'purchase answered ' + r.status + ': ' + (await r.text()));
    await page.getByText('Scan a loyalty card').waitFor({ timeout: 5000 });
    assert.equal(await card.isVisible(), false, 'the card is still shown after the purchase');
    await page.getByText(/Purchase recorded/).waitFor({ timeout: 5000 });
    console.log('PASS purchase clears the card');

    assert.deepEqual(external, [], 'the page fetched something not from the agent');
  } finally {
    await browser.close();
  }
}

// stdin stays open (the harness may answer), so exit explicitly.
main().then(() => process.exit(0), (e) => { console.error('FAIL', e); process.exit(1); });
