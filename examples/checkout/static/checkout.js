// The checkout page. The Pay button never disables itself: every click
// sends a payment, and the server decides what the gateway charges.
'use strict';

const $ = (id) => document.getElementById(id);

let clicks = 0;      // POST /pay requests sent since the page loaded
let answered = 0;    // ... and answered (or failed)
let stateSeq = 0;    // GET /state requests sent
let shownSeq = 0;    // the newest one shown
let cart = '';       // the cart the page shows
let attempt = 0;     // its payment attempt, sent with each click: a decline
                     // starts the next one, so another card can be tried

const money = (cents) => '$' + (cents / 100).toFixed(2);

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

function showInflight() {
  const n = clicks - answered;
  $('inflight').textContent = n > 0 ? `(${n} waiting for the gateway)` : '';
}

async function pay() {
  clicks++;
  $('status').dataset.synced = 'false';
  const li = el('li', 'sending…');
  li.dataset.result = 'pending';
  $('log').append(li);
  showInflight();

  const paying = cart;
  const body = { keyed: $('keyed').checked, flaky: $('flaky').checked, card: $('card').value, attempt };
  let res;
  try {
    const r = await fetch('/pay', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    res = await r.json();
  } catch (e) {
    res = { ok: false, error: 'network', message: 'The shop did not answer: ' + e };
  }
  answered++;
  if (paying === cart && res.next_attempt > attempt) attempt = res.next_attempt;
  showInflight();
  showResult(li, res);
  refresh();
}

function showResult(li, res) {
  li.replaceChildren();
  li.dataset.result = res.ok ? 'ok' : 'error';
  if (res.ok) {
    li.append(el('code', res.charge_id));
    li.append(res.replayed ? el('span', 'replayed', 'tag replayed') : el('span', 'charged', 'tag new'));
    if (res.attempts > 1) li.append(el('span', `${res.attempts} attempts`, 'tag retried'));
  } else {
    li.append(el('strong', (res.error || 'error').replaceAll('_', ' ') + ': '));
    li.append(res.message || '');
    if (res.error === 'declined' && res.next_attempt) {
      li.append(' ', el('span', 'Choose another card and pay again.', 'hint'));
    }
  }
  if (res.note) li.append(el('div', res.note, 'note'));
  if (res.key) {
    li.append(el('div', 'key ' + res.key, 'muted'));
  }
  li.dataset.replayed = String(!!res.replayed);
  li.dataset.attempts = String(res.attempts || 0);
}

async function refresh() {
  const seq = ++stateSeq;
  const clicksBefore = clicks;
  const settledBefore = answered === clicks; // every click answered before this request
  let s;
  try {
    const r = await fetch('/state', { cache: 'no-store' });
    s = await r.json();
  } catch (e) {
    return; // the next poll tries again
  }
  if (seq < shownSeq) {
    return; // a newer answer is already shown
  }
  shownSeq = seq;
  render(s, settledBefore && clicksBefore === clicks);
}

function render(s, synced) {
  if (s.cart !== cart) {
    // A new cart (or the first look at one): pay its current attempt.
    // Later attempts come only from a decline's answer, so that a second
    // click on a declined attempt replays its decline.
    cart = s.cart;
    attempt = s.attempt;
  }
  $('cart-id').textContent = s.cart || '(none: reload the page)';
  const n = s.charges.length;
  const status = $('status');
  status.dataset.charges = String(n);
  status.dataset.duplicates = String(s.duplicates);
  status.dataset.cart = s.cart;
  status.dataset.state = n === 0 ? 'none' : s.duplicates === 0 ? 'ok' : 'duplicates';
  status.dataset.synced = String(synced);

  let title, detail;
  if (n === 0) {
    title = 'No charge yet';
    detail = 'The gateway holds no charge for this cart.';
  } else if (s.duplicates === 0) {
    title = '1 charge — no duplicates';
    detail = `The customer paid ${money(s.charged)}, once.`;
  } else {
    title = `${n} charges — ${s.duplicates} duplicate${s.duplicates === 1 ? '' : 's'}`;
    detail = `The customer paid ${money(s.charged)} for a ${money(s.amount)} cart.`;
  }
  $('status-title').textContent = title;
  $('status-detail').textContent = detail;

  const rows = s.charges.map((ch, i) => {
    const tr = el('tr');
    if (i > 0) tr.className = 'duplicate';
    tr.append(el('td', ch.id), el('td', ch.key));
    return tr;
  });
  $('ledger').replaceChildren(...rows);
}

async function newCart() {
  try {
    const r = await fetch('/cart', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{}',
    });
    if (!r.ok) throw new Error('status ' + r.status);
  } catch (e) {
    $('status-detail').textContent = 'Could not start a new cart: ' + e;
    return;
  }
  $('log').replaceChildren();
  refresh();
}

$('pay').addEventListener('click', pay);
$('new-cart').addEventListener('click', newCart);
refresh();
setInterval(refresh, 300);
