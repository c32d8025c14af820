// flows.mjs drives stripe-node, unmodified apart from pointing it at the
// mock, through the flows of issue 13's "Tested with the real clients":
//
//   node flows.mjs <base-url> <sk_test_key> [flow ...]
//
// With no flow named it runs them all, in the order of FLOWS. Each flow
// prints one JSON line, {"flow": name, ...what it saw}, and asserts nothing
// itself: stripenode_test.go holds the assertions, so a failure names the
// field that differs from Stripe. An error the flow did not expect is
// printed as {"flow": name, "unexpected": {...}} and makes the exit status
// 1; a usage error exits 2. Every flow is self-contained, with its own
// idempotency keys, so any one of them can run alone.
//
// The list flow uses a second API key, <sk_test_key>_list_<run>, so that its
// account holds only the charges it creates; the pi_list flow likewise uses
// <sk_test_key>_pi_list_<run> and the accounts flow <sk_test_key>_other_<run>.
// Any sk_test_ key is an account on the mock.
//
// The flows named pi_… drive PaymentIntents (docs/protocol.md §9.5). The
// webhook flow uses <sk_test_key>_webhook_<run> and a server of its own on
// 127.0.0.1 for webhook deliveries (§10).

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import Stripe from 'stripe';

const USAGE = 'usage: node flows.mjs <base-url> <sk_test_key> [flow ...]';

// A run's prefix keeps its idempotency keys and extra accounts apart from
// those of any other run against the same mock.
const run = randomBytes(6).toString('hex');

// client returns a stripe-node client for the mock at base, with the given
// API key. Retries are off, so that the flows see each response as the mock
// sent it; stripe-node still retries a closed connection once, as it does
// against Stripe.
function client(base, key) {
  const u = new URL(base);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new UsageError(`base URL ${base} is not http or https`);
  }
  return new Stripe(key, {
    host: u.hostname,
    port: u.port || (u.protocol === 'https:' ? 443 : 80),
    protocol: u.protocol.slice(0, -1),
    maxNetworkRetries: 0,
    timeout: 10_000,
    telemetry: false,
  });
}

class UsageError extends Error {}

// seen is what a flow records of a successful response: the object and the
// headers that carry Stripe's idempotency rules.
function seen(obj) {
  const h = obj.lastResponse?.headers ?? {};
  return {
    body: obj,
    status: obj.lastResponse?.statusCode,
    idempotent_replayed: h['idempotent-replayed'] ?? null,
    idempotency_key: h['idempotency-key'] ?? null,
    request_id: h['request-id'] ?? null,
  };
}

// failure is what a flow records of an error stripe-node threw: the class it
// chose (err.type, such as StripeCardError) and the fields of Stripe's error
// envelope, with the idempotency headers.
function failure(err) {
  if (!(err instanceof Stripe.errors.StripeError)) {
    return { class: err?.constructor?.name ?? typeof err, message: String(err?.message ?? err) };
  }
  const h = err.headers ?? {};
  return {
    class: err.type,
    stripe_error: true,
    status: err.statusCode ?? null,
    type: err.rawType ?? null,
    code: err.code ?? null,
    decline_code: err.decline_code ?? null,
    param: err.param ?? null,
    charge: err.charge ?? null,
    // stripe-node copies the envelope's payment_intent onto the error.
    payment_intent: err.payment_intent ?? null,
    message: err.message,
    idempotent_replayed: h['idempotent-replayed'] ?? null,
    idempotency_key: h['idempotency-key'] ?? null,
  };
}

// refused runs a call that should fail and returns what it threw; a call
// that succeeds is recorded as {succeeded: <what it returned>}.
async function refused(call) {
  try {
    return { succeeded: seen(await call()) };
  } catch (err) {
    return failure(err);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// controlPost posts body, as JSON, to the mock's control surface (/_mock/,
// docs/protocol.md §6), and returns the status and the decoded answer.
async function controlPost(base, path, body) {
  const res = await fetch(new URL(path, base), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

// verify records what stripe-node's constructEvent makes of a delivery:
// the event, or the class of the error it threw.
function verify(stripe, body, signature, secret) {
  try {
    const ev = stripe.webhooks.constructEvent(body, signature, secret);
    return { verified: true, id: ev.id, type: ev.type, object_id: ev.data?.object?.id ?? null, livemode: ev.livemode };
  } catch (err) {
    return { verified: false, error: err?.type ?? err?.constructor?.name };
  }
}

const FLOWS = {
  // A charge with a key: Stripe's charge object.
  async charge({ stripe }) {
    const ch = await stripe.charges.create(
      { amount: 2000, currency: 'usd', source: 'tok_visa', description: 'stripenode charge', metadata: { flow: 'charge' } },
      { idempotencyKey: `${run}-charge` },
    );
    return { key: `${run}-charge`, created: seen(ch) };
  },

  // The same request with the same key: the stored charge, marked replayed.
  async replay({ stripe }) {
    const key = `${run}-replay`;
    const params = { amount: 2001, currency: 'usd', source: 'tok_visa', metadata: { flow: 'replay' } };
    const first = await stripe.charges.create(params, { idempotencyKey: key });
    const again = await stripe.charges.create(params, { idempotencyKey: key });
    return { key, first: seen(first), again: seen(again) };
  },

  // The same key with another amount: Stripe's 400 idempotency_error.
  async mismatch({ stripe }) {
    const key = `${run}-mismatch`;
    const first = await stripe.charges.create(
      { amount: 2100, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: key });
    const other = await refused(() => stripe.charges.create(
      { amount: 2200, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: key }));
    return { key, first: seen(first), other };
  },

  // Stripe's declining test tokens, and a declined request replayed under
  // its key (Stripe stores a card error like any response that executed).
  async decline({ stripe }) {
    const key = `${run}-decline`;
    const params = { amount: 2300, currency: 'usd', source: 'tok_chargeDeclined' };
    const declined = await refused(() => stripe.charges.create(params, { idempotencyKey: key }));
    const again = await refused(() => stripe.charges.create(params, { idempotencyKey: key }));
    const insufficient = await refused(() => stripe.charges.create(
      { amount: 2301, currency: 'usd', source: 'tok_chargeDeclinedInsufficientFunds' },
      { idempotencyKey: `${run}-decline-funds` }));
    return { key, declined, again, insufficient };
  },

  // Ten creates at once with one key: one charge. A request that finds the
  // key in flight gets Stripe's 409, which stripe-node raises as a
  // StripeAPIError (it maps only a 400 or 404 idempotency_error to
  // StripeIdempotencyError); it is retried until it gets the stored
  // response.
  async concurrent({ stripe }) {
    const key = `${run}-concurrent`;
    const params = { amount: 2400, currency: 'usd', source: 'tok_visa', metadata: { flow: 'concurrent' } };
    const conflicts = [];
    const one = async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return { attempts: attempt, ...seen(await stripe.charges.create(params, { idempotencyKey: key })) };
        } catch (err) {
          const f = failure(err);
          if (f.status !== 409 || attempt >= 200) throw err;
          conflicts.push(f);
          await sleep(25);
        }
      }
    };
    const results = await Promise.all(Array.from({ length: 10 }, one));
    // The conflicts, each kind once, with how many there were.
    const kinds = new Map();
    for (const { message, ...kind } of conflicts) {
      const k = JSON.stringify(kind);
      kinds.set(k, { ...kind, message, count: (kinds.get(k)?.count ?? 0) + 1 });
    }
    return {
      key,
      results: results.map(({ body, ...rest }) => ({ id: body.id, amount: body.amount, ...rest })),
      conflicts: [...kinds.values()],
    };
  },

  // A charge authorized with capture=false, then captured.
  async capture({ stripe }) {
    const ch = await stripe.charges.create(
      { amount: 2500, currency: 'usd', source: 'tok_visa', capture: false },
      { idempotencyKey: `${run}-capture` });
    const captured = await stripe.charges.capture(ch.id);
    return { authorized: seen(ch), captured: seen(captured) };
  },

  // A partial refund, then one without an amount, which refunds the rest.
  async refund({ stripe }) {
    const ch = await stripe.charges.create(
      { amount: 3000, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: `${run}-refund` });
    const partial = await stripe.refunds.create({ charge: ch.id, amount: 1000 });
    const afterPartial = await stripe.charges.retrieve(ch.id);
    const rest = await stripe.refunds.create({ charge: ch.id });
    const afterRest = await stripe.charges.retrieve(ch.id);
    return {
      charge: seen(ch), partial: seen(partial), after_partial: seen(afterPartial),
      rest: seen(rest), after_rest: seen(afterRest),
    };
  },

  // A refund larger than what is left is refused and changes nothing; so is
  // a refund of a fully refunded charge.
  async over_refund({ stripe }) {
    const ch = await stripe.charges.create(
      { amount: 1500, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: `${run}-over-refund` });
    const first = await stripe.refunds.create({ charge: ch.id, amount: 1000 });
    const over = await refused(() => stripe.refunds.create({ charge: ch.id, amount: 1000 }));
    const after = await stripe.charges.retrieve(ch.id);
    const full = await stripe.charges.create(
      { amount: 1600, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: `${run}-over-refund-full` });
    await stripe.refunds.create({ charge: full.id });
    const again = await refused(() => stripe.refunds.create({ charge: full.id }));
    return { charge: seen(ch), first: seen(first), over, after: seen(after), full_id: full.id, again };
  },

  // Seven charges in a fresh account, listed three a page with stripe-node's
  // auto-pagination.
  async list({ base, key }) {
    const stripe = client(base, `${key}_list_${run}`);
    const created = [];
    for (let i = 0; i < 7; i++) {
      const ch = await stripe.charges.create(
        { amount: 2600 + i, currency: 'usd', source: 'tok_visa' }, { idempotencyKey: `${run}-list-${i}` });
      created.push(ch.id);
    }
    const pages = [];
    const onRequest = (e) => { if (e.method === 'GET') pages.push(e.path); };
    stripe.on('request', onRequest);
    const listed = [];
    for await (const ch of stripe.charges.list({ limit: 3 })) listed.push(ch.id);
    stripe.off('request', onRequest);
    const { data, ...first } = await stripe.charges.list({ limit: 3 });
    return { created, listed, pages, first_page: { ...first, ids: data.map((c) => c.id) } };
  },

  // One idempotency key under two Stripe-Account headers, and under a
  // second API key: a charge each. The key replays within its own scope.
  async accounts({ stripe, base, key }) {
    const idem = `${run}-accounts`;
    const params = { amount: 2700, currency: 'usd', source: 'tok_visa' };
    const acctA = `acct_${run}a`;
    const acctB = `acct_${run}b`;
    const a = await stripe.charges.create(params, { idempotencyKey: idem, stripeAccount: acctA });
    const b = await stripe.charges.create(params, { idempotencyKey: idem, stripeAccount: acctB });
    const aAgain = await stripe.charges.create(params, { idempotencyKey: idem, stripeAccount: acctA });
    const plain = await stripe.charges.create(params, { idempotencyKey: idem });
    const other = await client(base, `${key}_other_${run}`).charges.create(params, { idempotencyKey: idem });
    // On Stripe a connected account's charge is not found under another.
    const crossAccount = await refused(() => stripe.charges.retrieve(a.id, {}, { stripeAccount: acctB }));
    return {
      key: idem, account_a: acctA, account_b: acctB,
      a: seen(a), b: seen(b), a_again: seen(aAgain), plain: seen(plain), other_api_key: seen(other),
      cross_account_retrieve: crossAccount,
    };
  },

  // A PaymentIntent confirmed at creation with capture_method=manual, so
  // that it only authorizes; then a partial capture of 4000 of its 5000.
  async pi_manual_capture({ stripe }) {
    const key = `${run}-pi-manual-capture`;
    const pi = await stripe.paymentIntents.create(
      { amount: 5000, currency: 'usd', payment_method: 'pm_card_visa', confirm: true, capture_method: 'manual' },
      { idempotencyKey: key });
    const authorized = await stripe.charges.retrieve(pi.latest_charge);
    const captured = await stripe.paymentIntents.capture(pi.id, { amount_to_capture: 4000 });
    const charge = await stripe.charges.retrieve(pi.latest_charge);
    return { key, created: seen(pi), authorized: seen(authorized), captured: seen(captured), charge: seen(charge) };
  },

  // Confirmed at creation with the default capture method, then the same
  // create under the same key: the stored intent, marked replayed.
  async pi_replay({ stripe }) {
    const key = `${run}-pi-replay`;
    const params = { amount: 5100, currency: 'usd', payment_method: 'pm_card_visa', confirm: true, metadata: { flow: 'pi_replay' } };
    const first = await stripe.paymentIntents.create(params, { idempotencyKey: key });
    const again = await stripe.paymentIntents.create(params, { idempotencyKey: key });
    return { key, first: seen(first), again: seen(again) };
  },

  // Created with a payment method but not confirmed, then confirmed.
  async pi_confirm({ stripe }) {
    const key = `${run}-pi-confirm`;
    const pi = await stripe.paymentIntents.create(
      { amount: 5200, currency: 'usd', payment_method: 'pm_card_visa' }, { idempotencyKey: key });
    const confirmed = await stripe.paymentIntents.confirm(pi.id, {}, { idempotencyKey: `${key}-confirm` });
    return { key, created: seen(pi), confirmed: seen(confirmed) };
  },

  // An unconfirmed intent canceled; then an intent that succeeded, whose
  // cancel Stripe refuses.
  async pi_cancel({ stripe }) {
    const key = `${run}-pi-cancel`;
    const pi = await stripe.paymentIntents.create(
      { amount: 5300, currency: 'usd', payment_method: 'pm_card_visa' }, { idempotencyKey: key });
    const canceled = await stripe.paymentIntents.cancel(pi.id, { cancellation_reason: 'requested_by_customer' });
    const done = await stripe.paymentIntents.create(
      { amount: 5301, currency: 'usd', payment_method: 'pm_card_visa', confirm: true },
      { idempotencyKey: `${key}-succeeded` });
    const late = await refused(() => stripe.paymentIntents.cancel(done.id));
    return { key, created: seen(pi), canceled: seen(canceled), succeeded: seen(done), cancel_succeeded: late };
  },

  // Confirmed at creation with a declining card: a StripeCardError naming
  // the intent, left in requires_payment_method; then confirmed again with
  // a card that pays.
  async pi_decline({ stripe }) {
    const key = `${run}-pi-decline`;
    let declined;
    let id = null;
    try {
      const pi = await stripe.paymentIntents.create(
        { amount: 5400, currency: 'usd', payment_method: 'pm_card_chargeDeclined', confirm: true },
        { idempotencyKey: key });
      declined = { succeeded: seen(pi) };
    } catch (err) {
      declined = failure(err);
      // Where stripe-node puts the intent: on the error, and in err.raw,
      // the envelope's error object as it was parsed.
      declined.raw_payment_intent = err?.raw?.payment_intent ?? null;
      declined.payment_intent_is_raw = err?.payment_intent != null && err.payment_intent === err?.raw?.payment_intent;
      id = err?.payment_intent?.id ?? null;
    }
    if (!id) return { key, declined };
    const retried = await stripe.paymentIntents.confirm(
      id, { payment_method: 'pm_card_visa' }, { idempotencyKey: `${key}-retry` });
    return { key, declined, retried: seen(retried) };
  },

  // A partial refund by payment_intent, which refunds its latest charge;
  // then a refund of more than is left.
  async pi_refund({ stripe }) {
    const key = `${run}-pi-refund`;
    const pi = await stripe.paymentIntents.create(
      { amount: 3000, currency: 'usd', payment_method: 'pm_card_visa', confirm: true }, { idempotencyKey: key });
    const refund = await stripe.refunds.create({ payment_intent: pi.id, amount: 1000 });
    const over = await refused(() => stripe.refunds.create({ payment_intent: pi.id, amount: 2500 }));
    const charge = await stripe.charges.retrieve(pi.latest_charge);
    return { key, intent: seen(pi), refund: seen(refund), over, charge: seen(charge) };
  },

  // Five intents in a fresh account, listed two a page with stripe-node's
  // auto-pagination.
  async pi_list({ base, key }) {
    const stripe = client(base, `${key}_pi_list_${run}`);
    const created = [];
    for (let i = 0; i < 5; i++) {
      const pi = await stripe.paymentIntents.create(
        { amount: 5500 + i, currency: 'usd', payment_method: 'pm_card_visa', confirm: true },
        { idempotencyKey: `${run}-pi-list-${i}` });
      created.push(pi.id);
    }
    const pages = [];
    const onRequest = (e) => { if (e.method === 'GET') pages.push(e.path); };
    stripe.on('request', onRequest);
    const listed = [];
    for await (const pi of stripe.paymentIntents.list({ limit: 2 })) listed.push(pi.id);
    stripe.off('request', onRequest);
    const { data, ...first } = await stripe.paymentIntents.list({ limit: 2 });
    return { created, listed, pages, first_page: { ...first, ids: data.map((p) => p.id), objects: data.map((p) => p.object) } };
  },

  // A webhook endpoint created with stripe-node, at a server of the
  // flow's own; a charge whose charge.succeeded event the mock delivers to
  // it, and twice more by a duplicate fault (§10.4); each copy verified by
  // stripe-node's constructEvent as a receiver would, and a forged and a
  // tampered one refused.
  async webhook({ base, key }) {
    const stripe = client(base, `${key}_webhook_${run}`);
    let secret = null;
    const received = [];
    const bodies = [];
    const server = createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const signature = req.headers['stripe-signature'];
        const rec = { path: req.url, signed: typeof signature === 'string', ...verify(stripe, body, signature, secret) };
        received.push(rec);
        bodies.push({ body, signature });
        res.writeHead(rec.verified ? 200 : 400).end();
      });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${server.address().port}/hooks/stripe`;
      const endpoint = await stripe.webhookEndpoints.create({ url, enabled_events: ['charge.succeeded'] });
      secret = endpoint.secret;
      const fault = await controlPost(base, '/_mock/delivery_faults', { kind: 'duplicate', endpoint: endpoint.id, copies: 2 });
      const ch = await stripe.charges.create(
        { amount: 2600, currency: 'usd', source: 'tok_visa', metadata: { flow: 'webhook' } },
        { idempotencyKey: `${run}-webhook` });
      // Answers once nothing is pending: every copy has been delivered, or
      // given up.
      const waited = await controlPost(base, '/_mock/deliveries/wait', { timeout_ms: 20000 });
      const first = bodies[0] ?? { body: Buffer.from('{}'), signature: '' };
      const forged = verify(stripe, first.body,
        stripe.webhooks.generateTestHeaderString({ payload: first.body.toString(), secret: 'whsec_not_the_endpoints' }), secret);
      const altered = first.body.toString().replace('"amount":2600', '"amount":1');
      const tampered = { changed: altered !== first.body.toString(), ...verify(stripe, Buffer.from(altered), first.signature, secret) };
      const deleted = await stripe.webhookEndpoints.del(endpoint.id);
      return {
        endpoint: { id: endpoint.id, url: endpoint.url, secret_prefix: secret?.slice(0, 6) ?? null, enabled_events: endpoint.enabled_events },
        fault_status: fault.status,
        charge_id: ch.id,
        waited,
        received,
        forged,
        tampered,
        deleted: deleted.deleted ?? null,
      };
    } finally {
      server.close();
    }
  },
};

async function main(argv) {
  const [base, key, ...names] = argv;
  if (!base || !key) throw new UsageError(USAGE);
  if (!key.startsWith('sk_test_')) throw new UsageError(`API key must start with sk_test_\n${USAGE}`);
  for (const n of names) {
    if (!Object.hasOwn(FLOWS, n)) throw new UsageError(`unknown flow ${n}; flows: ${Object.keys(FLOWS).join(' ')}`);
  }
  const stripe = client(base, key);
  let failed = 0;
  for (const name of names.length ? names : Object.keys(FLOWS)) {
    let line;
    try {
      line = { flow: name, ...(await FLOWS[name]({ stripe, base, key })) };
    } catch (err) {
      failed++;
      line = { flow: name, unexpected: failure(err) };
      console.error(`flows.mjs: flow ${name}: ${err?.type ?? err?.constructor?.name}: ${err?.message ?? err}`);
    }
    console.log(JSON.stringify(line));
  }
  if (failed > 0) {
    console.error(`flows.mjs: ${failed} flow(s) met an error they did not expect`);
    process.exitCode = 1;
  }
}

main(process.argv.slice(2)).catch((err) => {
  console.error(`flows.mjs: ${err?.message ?? err}`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
});
