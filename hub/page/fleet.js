// The fleet page (hub/fleet_http.c): reads /v1/fleet every few seconds and
// shows one row per terminal. Every value goes in with textContent: store
// and terminal names come from certificates and are never markup.
'use strict';
// Every 2 s, or three times as long as the last answer took (a large fleet).
const REFRESH_MS = 2000;
let timer = null;

function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function age(s) {
  if (s < 0) return 'never';
  if (s < 120) return s + ' s';
  if (s < 7200) return Math.round(s / 60) + ' min';
  if (s < 172800) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

function row(t) {
  const tr = document.createElement('tr');
  const r = t.report;
  tr.dataset.store = t.store;
  tr.dataset.terminal = t.terminal;
  tr.dataset.health = t.problems.length ? t.problems.join(' ') : 'ok';
  if (t.stale) tr.classList.add('stale');
  if (t.problems.length) tr.classList.add('problem');
  cell(tr, t.store);
  cell(tr, t.terminal);
  cell(tr, t.problems.length ? t.problems.join(', ').replace(/_/g, ' ') : 'ok', 'health');
  cell(tr, age(t.age_s) + ' ago');
  if (!r) {
    for (let i = 0; i < 10; i++) cell(tr, '–');
    return tr;
  }
  cell(tr, r.link);
  cell(tr, r.lag_s < 0 ? 'never synced' : age(r.lag_s), 'num');
  cell(tr, String(r.cards), 'num');
  cell(tr, r.outbox.depth ? r.outbox.depth + ' (oldest ' + age(r.outbox.oldest_s) + ')' : '0', 'num');
  cell(tr, String(r.outbox.dead), 'num');
  cell(tr, r.inputs.length ? r.inputs.map((i) => i.name + ': ' + i.state).join(', ') : 'none');
  cell(tr, r.cert_days === undefined ? 'unknown' : r.cert_days + ' days');
  cell(tr, r.skew_s === undefined ? 'unknown' : (r.skew_s > 0 ? '+' : '') + r.skew_s + ' s');
  cell(tr, r.version);
  cell(tr, r.os || 'unknown');
  return tr;
}

// Match rate of each store's newest local day (docs/PROTOCOL.md "Match rate"):
// identified of all transactions, delivered of identified, as exact counts.
function matchRow(m) {
  const tr = document.createElement('tr');
  tr.dataset.store = String(m.store);
  cell(tr, m.store);
  cell(tr, m.day);
  cell(tr, String(m.terminals), 'num');
  cell(tr, String(m.transactions), 'num');
  cell(tr, m.identified_share, 'num');
  cell(tr, m.delivered_share, 'num');
  return tr;
}

function showMatch(list) {
  document.getElementById('match-rows').replaceChildren(...(Array.isArray(list) ? list : []).map(matchRow));
}

// One sink's queue (hub/sink_admin.c ts_hub_sinkq_fleet).
function sinkRow(k) {
  const tr = document.createElement('tr');
  tr.dataset.sink = k.sink;
  if (k.dead || k.failed) tr.classList.add('problem');
  cell(tr, k.sink);
  cell(tr, k.type);
  cell(tr, String(k.pending), 'num');
  cell(tr, k.pending ? age(k.oldest_pending_age_s) : '–', 'num');
  cell(tr, String(k.sent), 'num');
  cell(tr, String(k.failed), 'num health');
  cell(tr, String(k.dead), 'num health');
  cell(tr, k.rate.toFixed(1) + '/s', 'num');
  return tr;
}

async function refresh() {
  const err = document.getElementById('error');
  const t0 = performance.now();
  clearTimeout(timer);
  try {
    const q = new URLSearchParams();
    const store = document.getElementById('store').value.trim();
    if (store) q.set('store', store);
    if (document.getElementById('unhealthy').checked) q.set('unhealthy', '1');
    const resp = await fetch('/v1/fleet?' + q, { credentials: 'same-origin', cache: 'no-store' });
    if (!resp.ok) throw new Error('the hub answered ' + resp.status);
    const f = await resp.json();
    const body = document.getElementById('terminals');
    body.replaceChildren(...f.terminals.map(row));
    showMatch(f.match_rate);
    document.getElementById('sinks').replaceChildren(...(f.sinks || []).map(sinkRow));
    document.getElementById('summary').textContent =
      f.count + ' terminal(s), ' + f.unhealthy + ' unhealthy, ' + f.stale +
      ' stale (silent over ' + f.stale_after_s + ' s), ' + f.terminals.length + ' shown — as of ' + f.now;
    err.textContent = '';
  } catch (e) {
    err.textContent = 'Cannot read the fleet: ' + e.message;
  }
  timer = setTimeout(refresh, Math.max(REFRESH_MS, 3 * (performance.now() - t0)));
}

document.getElementById('filters').addEventListener('submit', (e) => { e.preventDefault(); refresh(); });
document.getElementById('store').addEventListener('change', refresh);
document.getElementById('unhealthy').addEventListener('change', refresh);
refresh();
