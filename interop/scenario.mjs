// Runs one interoperability scenario with the real, unmodified CometD
// JavaScript client (adapted to Node.js by cometd-nodejs-client) against a
// running `wsfleet serve`. Driven by interop_test.go:
//
//   node scenario.mjs SCENARIO TRANSPORT
//
// SCENARIO is basic, batch, auth, restart or advice; TRANSPORT is
// websocket, long-polling or callback-polling. The node's URL, admin token
// and tokens come in the environment (WSFLEET_URL, WSFLEET_ADMIN,
// TOKEN_GOOD, TOKEN_BAD). Each passed step prints "ok STEP"; a failure
// prints "FAIL ..." and exits 1. For restart, the script prints "RESTART"
// and waits for a line on stdin once the test has restarted the server.
// The client and its JSONP loader come from cometd-node.mjs.

import assert from 'node:assert';
import readline from 'node:readline';
import { newClient as newCometD, requests } from './cometd-node.mjs';

const [scenario, transport] = process.argv.slice(2);
const base = process.env.WSFLEET_URL;
const endpoint = base + '/bayeux';
const admin = process.env.WSFLEET_ADMIN;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let lastStep = '(none)';
const step = (name) => {
  lastStep = name;
  console.log('ok ' + name);
};

const newClient = () => newCometD(transport, endpoint);

// promised turns a CometD call with a trailing reply callback into a
// promise of the reply.
function promised(fn) {
  return new Promise((res) => fn((reply) => res(reply)));
}

const handshake = (c, props) => promised((cb) => c.handshake(props, cb));
const subscribe = (c, ch, fn, props) => {
  let sub;
  return promised((cb) => { sub = c.subscribe(ch, fn, props, cb); }).then((reply) => ({ reply, sub }));
};
const unsubscribe = (c, sub) => promised((cb) => c.unsubscribe(sub, cb));
const publishC = (c, ch, data) => promised((cb) => c.publish(ch, data, cb));
const disconnect = (c) => promised((cb) => c.disconnect(cb));

// connected resolves at the client's next successful /meta/connect.
function connected(c) {
  return new Promise((res) => {
    const l = c.addListener('/meta/connect', (m) => {
      if (m.successful) {
        c.removeListener(l);
        res(m);
      }
    });
  });
}

// open handshakes and waits for the first successful /meta/connect,
// failing when either does not come.
async function open(c, props) {
  const first = connected(c);
  const hs = await handshake(c, props);
  if (!hs.successful) {
    c.disconnect();
    throw new Error('handshake failed: ' + JSON.stringify(hs));
  }
  let timer;
  await Promise.race([first, new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error('no successful /meta/connect after the handshake')), 10000);
  })]);
  clearTimeout(timer);
  return hs;
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
    await sleep(50);
  }
}

async function basic() {
  const c = newClient();
  const first = connected(c);
  const hs = await handshake(c);
  assert.strictEqual(hs.successful, true, 'handshake: ' + JSON.stringify(hs));
  assert.ok(hs.clientId, 'no clientId');
  assert.strictEqual(hs.version, '1.0');
  assert.ok(hs.supportedConnectionTypes.includes(transport),
    'server does not advertise ' + transport + ': ' + hs.supportedConnectionTypes);
  assert.strictEqual(c.getTransport().type, transport);
  await first;
  step('handshake and connect over ' + transport);

  const room = [], wild = [], deep = [];
  const r1 = await subscribe(c, '/chat/room1', (m) => room.push(m));
  const r2 = await subscribe(c, '/chat/*', (m) => wild.push(m));
  const r3 = await subscribe(c, '/deep/**', (m) => deep.push(m));
  for (const r of [r1, r2, r3]) {
    assert.strictEqual(r.reply.successful, true, 'subscribe: ' + JSON.stringify(r.reply));
  }
  assert.strictEqual(r2.reply.subscription, '/chat/*');
  step('subscribe, with wildcards');

  await publish('/chat/room1', { n: 1 });
  await publish('/chat/room2', { n: 2 });
  await publish('/deep/a/b/c', { n: 3 });
  await publish('/other', { n: 4 });
  await until('deliveries', () => room.length === 1 && wild.length === 2 && deep.length === 1);
  assert.deepStrictEqual(room[0].data, { n: 1 });
  assert.strictEqual(room[0].channel, '/chat/room1');
  assert.deepStrictEqual(wild.map((m) => m.data.n), [1, 2]);
  assert.strictEqual(wild[1].channel, '/chat/room2');
  assert.deepStrictEqual(deep[0].data, { n: 3 });
  step('receive');

  const ack = await publishC(c, '/chat/room1', { n: 5, from: 'cometd' });
  assert.strictEqual(ack.successful, true, 'publish: ' + JSON.stringify(ack));
  await until('own publication', () => room.length === 2);
  assert.deepStrictEqual(room[1].data, { n: 5, from: 'cometd' });
  const nobody = await publishC(c, '/nobody/listens', { n: 0 });
  assert.strictEqual(nobody.successful, true, 'publish to an empty channel: ' + JSON.stringify(nobody));
  step('publish');

  const un = await unsubscribe(c, r1.sub);
  assert.strictEqual(un.successful, true, 'unsubscribe: ' + JSON.stringify(un));
  await publish('/chat/room1', { n: 6 });
  await until('wildcard delivery after unsubscribe', () => wild.length === 4);
  await sleep(200);
  assert.strictEqual(room.length, 2, 'message delivered after unsubscribe');
  step('unsubscribe');

  const sessions = await metric('wsfleet_sessions');
  const bye = await disconnect(c);
  assert.strictEqual(bye.successful, true, 'disconnect: ' + JSON.stringify(bye));
  assert.strictEqual(c.getStatus(), 'disconnected');
  await until('session removed', async () => (await metric('wsfleet_sessions')) === sessions - 1);
  step('disconnect');
}

async function batch() {
  const c = newClient();
  await open(c);
  const got = [];
  const replies = [];
  const before = requests.length;
  c.batch(() => {
    c.subscribe('/room/a', (m) => got.push(m), (r) => replies.push(r));
    c.subscribe('/room/b', (m) => got.push(m), (r) => replies.push(r));
    // published in the same request after the subscribes: the server
    // handles a batch in order, so this reaches the new subscription.
    c.publish('/room/a', { n: 1 }, (r) => replies.push(r));
  });
  await until('batch replies', () => replies.length === 3);
  for (const r of replies) assert.strictEqual(r.successful, true, JSON.stringify(r));
  const sent = requests.slice(before).filter((msgs) => msgs.some((m) => m.channel !== '/meta/connect'));
  assert.strictEqual(sent.length, 1, 'batch went out in ' + sent.length + ' requests');
  assert.deepStrictEqual(sent[0].map((m) => m.channel), ['/meta/subscribe', '/meta/subscribe', '/room/a']);
  await until('delivery of the batched publish', () => got.length === 1);
  assert.deepStrictEqual(got[0].data, { n: 1 });
  step('batch of subscribe, subscribe, publish in one request');

  const unsubs = [];
  const s1 = c.subscribe('/room/c', () => {});
  const s2 = c.subscribe('/room/d', () => {});
  await sleep(100);
  c.batch(() => {
    c.unsubscribe(s1, (r) => unsubs.push(r));
    c.unsubscribe(s2, (r) => unsubs.push(r));
    c.publish('/room/b', { n: 2 }, (r) => unsubs.push(r));
  });
  await until('second batch', () => unsubs.length === 3 && got.length === 2);
  for (const r of unsubs) assert.strictEqual(r.successful, true, JSON.stringify(r));
  step('batch of unsubscribes and a publish');
  await disconnect(c);
}

async function auth() {
  const bad = newClient();
  const refused = await handshake(bad, { ext: { token: process.env.TOKEN_BAD } });
  assert.strictEqual(refused.successful, false, 'bad token accepted');
  assert.match(refused.error, /^403::/);
  bad.disconnect();
  step('bad token refused: ' + refused.error);

  const c = newClient();
  await open(c, { ext: { token: process.env.TOKEN_GOOD } });
  const mine = [];
  const own = await subscribe(c, '/user/alice/inbox', (m) => mine.push(m));
  assert.strictEqual(own.reply.successful, true, JSON.stringify(own.reply));
  step('own channel allowed');
  const other = await subscribe(c, '/user/bob/inbox', () => {});
  assert.strictEqual(other.reply.successful, false, "subscribing to another user's channel succeeded");
  assert.match(other.reply.error, /^403:/);
  assert.strictEqual(other.reply.subscription, '/user/bob/inbox');
  step('other user denied: ' + other.reply.error);
  const pub = await publishC(c, '/user/alice/inbox', { x: 1 });
  assert.strictEqual(pub.successful, false, 'publish without a publish rule succeeded');
  assert.match(pub.error, /^403:/);
  step('publish denied: ' + pub.error);
  await publish('/user/bob/inbox', { to: 'bob' });
  await publish('/user/alice/inbox', { to: 'alice' });
  await until('delivery', () => mine.length === 1);
  await sleep(200);
  assert.deepStrictEqual(mine.map((m) => m.data), [{ to: 'alice' }]);
  step('only own messages');
  await disconnect(c);
}

// restart subscribes the way CometD's documentation recommends: from a
// /meta/handshake listener, so that a re-handshake resubscribes.
async function restart() {
  const c = newClient();
  const got = [];
  const handshakes = [];
  c.addListener('/meta/handshake', (m) => {
    handshakes.push(m);
    if (m.successful) {
      c.batch(() => c.subscribe('/news', (msg) => got.push(msg)));
    }
  });
  await handshake(c);
  await until('subscribed', async () => (await metric('wsfleet_subscriptions')) === 1);
  await publish('/news', { n: 'before' });
  await until('delivery before restart', () => got.length === 1);
  const firstId = c.getClientId();
  step('subscribed before restart');

  console.log('RESTART');
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise((res) => rl.once('line', res));
  rl.close();

  let n = 0;
  await until('delivery after restart', async () => {
    await publish('/news', { n: 'after', i: n++ }).catch(() => {});
    return got.some((m) => m.data.n === 'after');
  }, 30000);
  assert.notStrictEqual(c.getClientId(), firstId, 'client id unchanged across a restart');
  const again = handshakes.filter((m) => m.successful);
  assert.ok(again.length >= 2 && again[again.length - 1].reestablish === true, 'no re-established handshake');
  assert.strictEqual(c.getTransport().type, transport);
  step('re-handshake and resubscribe after restart');
  await disconnect(c);
}

// advice checks /meta/connect timing: the first connect carries
// advice.timeout 0 and must be answered at once; the next ones are held
// for the server's timeout (the test runs the node with --timeout 4s).
async function advice() {
  const c = newClient();
  const connects = [];
  c.addListener('/meta/connect', (m) => connects.push({ at: Date.now(), m }));
  const hs = await handshake(c);
  const t0 = Date.now();
  assert.strictEqual(hs.successful, true, 'handshake: ' + JSON.stringify(hs));
  assert.strictEqual(hs.advice.reconnect, 'retry');
  assert.strictEqual(hs.advice.timeout, 4000, 'handshake advice: ' + JSON.stringify(hs.advice));
  await until('first connect', () => connects.length >= 1, 3000);
  assert.strictEqual(connects[0].m.successful, true);
  const first = requests.find((msgs) => msgs.some((m) => m.channel === '/meta/connect'));
  assert.strictEqual(first[0].advice.timeout, 0, 'CometD did not send advice.timeout 0');
  step('first connect (advice.timeout 0) answered after ' + (connects[0].at - t0) + ' ms');

  // the second connect is held: nothing arrives before the hold, and it
  // comes back after about the timeout.
  await sleep(2000);
  assert.strictEqual(connects.length, 1, 'second connect answered before its hold: ' + JSON.stringify(connects.map((x) => x.m)));
  await until('held connect', () => connects.length >= 2, 8000);
  const held = connects[1].at - connects[0].at;
  assert.ok(held >= 2500, 'held connect returned after ' + held + ' ms');
  step('next connect held ' + held + ' ms');

  // a message ends the hold at once.
  const got = [];
  await subscribe(c, '/wake', (m) => got.push(m));
  const n = connects.length;
  await sleep(300);
  await publish('/wake', { n: 1 });
  await until('delivery', () => got.length === 1, 2000);
  step('a delivery ends the hold');
  assert.ok(connects.length >= n);
  await disconnect(c);
}

const scenarios = { basic, batch, auth, restart, advice };

// a step that never completes fails the run rather than hanging it.
setTimeout(() => {
  console.log('FAIL timed out after 60s; last step done: ' + lastStep);
  process.exit(1);
}, 60000).unref();

(async () => {
  if (!scenarios[scenario]) throw new Error('unknown scenario ' + scenario);
  await scenarios[scenario]();
  process.exit(0);
})().catch((e) => {
  console.log('FAIL ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
