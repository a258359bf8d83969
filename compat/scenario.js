'use strict';
// Runs one compatibility scenario with a real, unmodified faye or halley
// client against a running `wsfleet serve`. Driven by compat_test.go:
//
//   node scenario.js SCENARIO CLIENT TRANSPORT
//
// SCENARIO is basic, auth, expiry or restart; CLIENT is faye or halley;
// TRANSPORT is websocket or long-polling. The node's URL, admin token and
// tokens come in the environment (WSFLEET_URL, WSFLEET_ADMIN, TOKEN_GOOD,
// TOKEN_BAD; TOKEN_SECRET and TOKEN_TTL for expiry, which mints its own).
// Each passed step prints "ok STEP"; a failure prints "FAIL ..." and exits
// 1. For restart, the script prints "RESTART" and waits for a line on stdin
// once the test has restarted the server.

const assert = require('assert');
const crypto = require('crypto');
const readline = require('readline');
const faye = require('faye');
const halley = require('halley');

const [scenario, kind, transport] = process.argv.slice(2);
const base = process.env.WSFLEET_URL;
const endpoint = base + '/bayeux';
const admin = process.env.WSFLEET_ADMIN;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const step = (name) => console.log('ok ' + name);

// makeClient returns a small uniform face over the two libraries. token
// is a token, or a function that returns the one to send, called at every
// handshake (as an application mints a fresh one).
function makeClient(token) {
  const seen = { handshakes: [] };
  const ext = {
    outgoing(message, callback) {
      if (token && message.channel === '/meta/handshake') {
        const t = typeof token === 'function' ? token() : token;
        message.ext = Object.assign({}, message.ext, { token: t });
      }
      callback(message);
    },
    incoming(message, callback) {
      if (message.channel === '/meta/handshake') seen.handshakes.push(message);
      callback(message);
    },
  };
  if (kind === 'faye') {
    const c = new faye.Client(endpoint, { retry: 1, timeout: 10 });
    if (transport === 'long-polling') c.disable('websocket');
    c.addExtension(ext);
    return {
      seen,
      raw: c,
      subscribe: (ch, fn) => {
        const s = c.subscribe(ch, fn);
        // a faye Subscription is itself a thenable: wrap it so that
        // resolving does not unwrap it
        return new Promise((res, rej) => s.then(() => res({ s }), rej));
      },
      unsubscribe: (w) => w.s.cancel(),
      publish: (ch, data) => new Promise((res, rej) => c.publish(ch, data).then(res, rej)),
      connectionType: () => c._dispatcher.connectionType,
      clientId: () => c._dispatcher.clientId,
      close: () => c.disconnect(),
    };
  }
  const opts = transport === 'long-polling'
    ? { disabled: ['websocket'], retry: 500 }
    : { connectionTypes: ['websocket'], retry: 500 };
  const c = new halley.Client(endpoint, opts);
  c.addExtension(ext);
  return {
    seen,
    raw: c,
    subscribe: (ch, fn) => Promise.resolve(c.subscribe(ch, fn)),
    unsubscribe: (s) => s.unsubscribe(),
    publish: (ch, data) => c.publish(ch, data),
    connectionType: () => transport,
    clientId: () => c.getClientId(),
    close: () => c.disconnect(),
  };
}

// publish sends through the node's HTTP publish endpoint, as an
// application backend does.
async function publish(channel, data) {
  const res = await fetch(base + '/publish', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + admin, 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
  assert.strictEqual(res.status, 200, 'publish ' + channel);
}

async function metric(name) {
  const text = await (await fetch(base + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : 0;
}

// until retries fn until it returns true, for at most ms.
async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(100);
  }
}

async function basic() {
  const c = makeClient();
  const room = [], wild = [], deep = [];
  const sRoom = await c.subscribe('/chat/room1', (m) => room.push(m));
  await c.subscribe('/chat/*', (m) => wild.push(m));
  await c.subscribe('/deep/**', (m) => deep.push(m));
  step('handshake and subscribe');

  await publish('/chat/room1', { n: 1 });
  await publish('/chat/room2', { n: 2 });
  await publish('/deep/a/b/c', { n: 3 });
  await publish('/other', { n: 4 });
  await until('deliveries', () => room.length === 1 && wild.length === 2 && deep.length === 1);
  assert.deepStrictEqual(room[0], { n: 1 });
  assert.deepStrictEqual(wild.map((m) => m.n), [1, 2]);
  assert.deepStrictEqual(deep[0], { n: 3 });
  step('receive, with wildcards');

  const wsConns = await metric('wsfleet_connections{transport="websocket"}');
  if (transport === 'websocket') {
    assert.ok(wsConns >= 1, 'no websocket connection open on the server');
    assert.strictEqual(c.connectionType(), 'websocket');
  } else {
    assert.strictEqual(wsConns, 0, 'a websocket is open although the client uses long-polling');
  }
  step('transport is ' + transport);

  await c.publish('/chat/room1', { n: 5, from: kind });
  await until('own publication', () => room.length === 2);
  assert.deepStrictEqual(room[1], { n: 5, from: kind });
  step('publish');

  await c.unsubscribe(sRoom);
  await sleep(300);
  await publish('/chat/room1', { n: 6 });
  await until('wildcard delivery after unsubscribe', () => wild.length === 4);
  await sleep(300);
  assert.strictEqual(room.length, 2, 'message delivered after unsubscribe');
  step('unsubscribe');

  await c.close();
}

async function auth() {
  const before = await metric('wsfleet_errors_total{code="403"}');
  const bad = makeClient(process.env.TOKEN_BAD);
  bad.subscribe('/user/alice/inbox', () => {}).then(() => {}, () => {});
  if (kind === 'faye') {
    await until('refused handshake', () => bad.seen.handshakes.length > 0);
    const h = bad.seen.handshakes[0];
    assert.strictEqual(h.successful, false);
    assert.match(h.error, /^403::Authentication failed/);
  } else {
    // halley turns an error reply carrying advice reconnect=handshake
    // into a transport error and retries, so its extensions never see
    // the reply: check the server refused it and the client has no id.
    await until('refused handshake', async () => (await metric('wsfleet_errors_total{code="403"}')) > before);
    assert.ok(!bad.clientId(), 'halley got a client id with a bad token');
  }
  step('bad token refused');
  if (kind === 'faye') bad.raw.disable('autodisconnect');

  const c = makeClient(process.env.TOKEN_GOOD);
  const mine = [];
  await c.subscribe('/user/alice/inbox', (m) => mine.push(m));
  step('own channel allowed');
  let denied = null;
  try {
    await c.subscribe('/user/bob/inbox', () => {});
  } catch (e) {
    denied = e;
  }
  assert.ok(denied, "subscribing to another user's channel succeeded");
  step('other user denied');
  let pubDenied = null;
  try {
    await c.publish('/user/alice/inbox', { x: 1 });
  } catch (e) {
    pubDenied = e;
  }
  assert.ok(pubDenied, 'publish without a publish rule succeeded');
  step('publish denied');
  await publish('/user/bob/inbox', { to: 'bob' });
  await publish('/user/alice/inbox', { to: 'alice' });
  await until('delivery', () => mine.length === 1);
  assert.deepStrictEqual(mine, [{ to: 'alice' }]);
  step('only own messages');
  await c.close();
}

// mint signs an HS256 client token for sub that expires in ttlSec, as an
// application backend would.
function mint(secret, sub, ttlSec) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64({ sub, iat: now, exp: now + ttlSec });
  return body + '.' + crypto.createHmac('sha256', secret).update(body).digest('base64url');
}

// expiry: the client's ext mints a fresh short-lived token at every
// handshake. When its session's token expires, the node answers the next
// connect or publish 401 with advice to handshake, and the client
// handshakes again with a fresh token, resubscribes and carries on
// receiving and publishing.
async function expiry() {
  const secret = process.env.TOKEN_SECRET;
  const ttl = Number(process.env.TOKEN_TTL);
  let minted = 0;
  const c = makeClient(() => {
    minted++;
    return mint(secret, 'alice', ttl);
  });
  const got = [];
  await c.subscribe('/user/alice/inbox', (m) => got.push(m));
  await publish('/user/alice/inbox', { n: 'before' });
  await until('delivery before expiry', () => got.length === 1);
  const firstId = c.clientId();
  step('subscribed with a short-lived token');

  await until('token expired', async () => (await metric('wsfleet_tokens_expired_total')) >= 1, 20000);
  step('node ended the session at expiry');

  let n = 0;
  await until('delivery after expiry', async () => {
    await publish('/user/alice/inbox', { n: 'after', i: n++ });
    return got.some((m) => m.n === 'after');
  }, 20000);
  assert.ok(minted >= 2, 'no handshake with a fresh token (' + minted + ' minted)');
  assert.notStrictEqual(c.clientId(), firstId, 'client id unchanged after its token expired');
  step('re-handshake with a fresh token and resubscribe');

  // a publish may meet the expiry of the new token too: it then fails
  // once and the client handshakes again.
  const own = [];
  await until('own publication after expiry', async () => {
    await c.publish('/user/alice/inbox', { own: own.length }).then(() => own.push(1), () => {});
    return own.length > 0 && got.some((m) => m.own !== undefined);
  }, 20000);
  step('publish after expiry');
  await c.close();
}

async function restart() {
  const c = makeClient();
  const got = [];
  await c.subscribe('/news', (m) => got.push(m));
  await publish('/news', { n: 'before' });
  await until('delivery before restart', () => got.length === 1);
  const firstId = c.clientId();
  step('subscribed before restart');

  console.log('RESTART');
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise((res) => rl.once('line', res));
  rl.close();

  // the client notices, re-handshakes and resubscribes by itself; keep
  // publishing until one arrives.
  let n = 0;
  await until('delivery after restart', async () => {
    await publish('/news', { n: 'after', i: n++ }).catch(() => {});
    return got.some((m) => m.n === 'after');
  }, 30000);
  assert.notStrictEqual(c.clientId(), firstId, 'client id unchanged across a restart');
  step('re-handshake and resubscribe after restart');
  await c.close();
}

const scenarios = { basic, auth, expiry, restart };

(async () => {
  if (!scenarios[scenario]) throw new Error('unknown scenario ' + scenario);
  await scenarios[scenario]();
  process.exit(0);
})().catch((e) => {
  console.log('FAIL ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
