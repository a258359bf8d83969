// Runs Faye's browser build (faye/client/faye-browser.js, the file pages
// load) against a running `wsfleet serve`, as a page on another origin
// would, over one of Faye's two browser HTTP transports. Driven by
// interop_test.go:
//
//   node browser-faye.mjs TRANSPORT
//
// TRANSPORT is cross-origin-long-polling (CORS POSTs of message=...),
// callback-polling (JSONP), both from a page on another origin, or
// long-polling (JSON POSTs from a page the node itself serves). Node has
// no browser, so this file supplies the few pieces Faye takes from one,
// each behaving as a browser's does: the page's location; an
// XMLHttpRequest that sends the Origin
// header, preflights a request with non-simple headers, and fails a
// response whose Access-Control-Allow-Origin and -Credentials do not
// admit the page; and a document whose <script> elements fetch their src
// and run it only when it is served as JavaScript. Everything else is
// Faye's code, unmodified. Output is as in scenario.mjs.

import assert from 'node:assert';
import http from 'node:http';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import vm from 'node:vm';

const [transport] = process.argv.slice(2);
const base = process.env.WSFLEET_URL;
const endpoint = base + '/bayeux';
const admin = process.env.WSFLEET_ADMIN;
// long-polling is Faye's same-origin transport: the page comes from the
// node's own origin.
const pageOrigin = transport === 'long-polling' ? new URL(base).origin : 'http://app.example';
const crossOrigin = pageOrigin !== new URL(base).origin;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let lastStep = '(none)';
const step = (name) => {
  lastStep = name;
  console.log('ok ' + name);
};

// sent holds every Bayeux message the client sent, in order.
const sent = [];
function record(json) {
  try {
    const msgs = JSON.parse(json);
    if (msgs) sent.push(...[].concat(msgs));
  } catch {}
}

// request performs one HTTP request and resolves to status, headers, body.
function request(method, url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const safelisted = new Set(['accept', 'accept-language', 'content-language', 'content-type']);

// BrowserXHR is the part of a browser's XMLHttpRequest that Faye's CORS
// transport uses, with the browser's cross-origin checks.
class BrowserXHR {
  withCredentials = false;
  status = 0;
  readyState = 0;
  responseText = '';

  open(method, url) {
    this.method = method;
    this.url = url;
    this.headers = {};
  }

  setRequestHeader(name, value) {
    this.headers[name] = value;
  }

  send(body) {
    record(body.startsWith('message=') ? new URLSearchParams(body).get('message') : body);
    (async () => {
      const custom = Object.keys(this.headers).filter((h) => !safelisted.has(h.toLowerCase()));
      if (crossOrigin && custom.length > 0) {
        const pre = await request('OPTIONS', this.url, {
          Origin: pageOrigin,
          'Access-Control-Request-Method': this.method,
          'Access-Control-Request-Headers': custom.join(',').toLowerCase(),
        });
        const allowed = (pre.headers['access-control-allow-headers'] || '').toLowerCase().split(/\s*,\s*/);
        if (pre.status !== 200 || pre.headers['access-control-allow-origin'] !== pageOrigin ||
          !custom.every((h) => allowed.includes(h.toLowerCase()))) {
          throw new Error('preflight refused: ' + pre.status + ' ' + JSON.stringify(pre.headers));
        }
      }
      const headers = { Origin: pageOrigin, 'Content-Type': 'text/plain;charset=UTF-8', ...this.headers };
      const res = await request(this.method, this.url, headers, body);
      if (crossOrigin && (res.headers['access-control-allow-origin'] !== pageOrigin ||
        (this.withCredentials && res.headers['access-control-allow-credentials'] !== 'true'))) {
        throw new Error('CORS refused the response: ' + JSON.stringify(res.headers));
      }
      this.status = res.status;
      this.responseText = res.text;
      this.done();
      if (this.onload) this.onload();
    })().catch((e) => {
      console.error('xhr: ' + e.message);
      this.status = 0;
      this.done();
      if (this.onerror) this.onerror();
    });
  }

  // done moves to readyState 4, which Faye's same-origin transport
  // watches for.
  done() {
    this.readyState = 4;
    if (this.onreadystatechange) this.onreadystatechange();
  }

  abort() {}
}

// the JSONP side: <script> elements that load over HTTP.
const head = {
  appendChild(script) {
    script.parentNode = head;
    const url = new URL(script.src);
    record(url.searchParams.get('message'));
    (async () => {
      const res = await request('GET', url, {});
      const type = (res.headers['content-type'] || '').split(';')[0].trim();
      if (res.status !== 200) throw new Error('HTTP ' + res.status + ': ' + res.text);
      if (!/^(text|application)\/javascript$/.test(type)) throw new Error('refused to run a script served as ' + type);
      new vm.Script(res.text).runInThisContext({ timeout: 1000 });
    })().catch((e) => {
      console.error('jsonp: ' + e.message);
      if (script.onerror) script.onerror({ type: 'error' });
    });
  },
  removeChild() {},
};

globalThis.window = globalThis;
globalThis.location = new URL(pageOrigin + '/chat.html');
globalThis.document = {
  getElementsByTagName: (name) => (name === 'head' ? [head] : []),
  createElement: () => ({}),
};
globalThis.XMLHttpRequest = BrowserXHR;
if (typeof globalThis.navigator === 'undefined') {
  globalThis.navigator = { product: 'Gecko', userAgent: 'wsfleet-interop' };
}

const require = createRequire(import.meta.url);
new vm.Script(fs.readFileSync(require.resolve('faye/client/faye-browser.js'), 'utf8'),
  { filename: 'faye-browser.js' }).runInThisContext();
const Faye = globalThis.Faye;

async function publish(channel, data) {
  const res = await fetch(base + '/publish', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + admin, 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
  assert.strictEqual(res.status, 200, 'publish ' + channel);
}

async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(50);
  }
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function main() {
  const client = new Faye.Client(endpoint, { retry: 1, timeout: 10 });
  // Faye handshakes over one of Bayeux's mandatory types (from another
  // origin: callback-polling), then moves to the best type both sides
  // have: without websocket, long-polling on its own origin and
  // cross-origin-long-polling on another.
  client.disable('websocket');
  client.disable('eventsource');
  if (transport === 'callback-polling') client.disable('cross-origin-long-polling');
  const room = [], wild = [];
  const s1 = client.subscribe('/chat/room1', (m) => room.push(m));
  await s1;
  await client.subscribe('/chat/*', (m) => wild.push(m));
  assert.strictEqual(client._dispatcher.connectionType, transport);
  const connects = sent.filter((m) => m.channel === '/meta/connect');
  const hs = sent.find((m) => m.channel === '/meta/handshake');
  assert.ok(hs.supportedConnectionTypes.includes(transport), 'handshake offered ' + hs.supportedConnectionTypes);
  assert.ok(connects.length > 0 && connects.every((m) => m.connectionType === transport),
    'connects sent: ' + JSON.stringify(connects));
  step('handshake, connect and subscribe over ' + transport);

  await publish('/chat/room1', { n: 1 });
  await publish('/chat/room2', { n: 2 });
  await until('deliveries', () => room.length === 1 && wild.length === 2);
  assert.ok(same(room[0], { n: 1 }) && same(wild.map((m) => m.n), [1, 2]), JSON.stringify({ room, wild }));
  step('receive, with a wildcard');

  await client.publish('/chat/room1', { n: 3, from: 'faye-browser' });
  await until('own publication', () => room.length === 2);
  step('publish');

  await s1.cancel();
  await sleep(300);
  await publish('/chat/room1', { n: 4 });
  await until('wildcard delivery after unsubscribe', () => wild.length === 4);
  await sleep(200);
  assert.strictEqual(room.length, 2, 'message delivered after unsubscribe');
  step('unsubscribe');

  await client.disconnect();
  await until('disconnect sent', () => sent.some((m) => m.channel === '/meta/disconnect'));
  step('disconnect');
}

// a step that never completes fails the run rather than hanging it.
setTimeout(() => {
  console.log('FAIL timed out after 60s; last step done: ' + lastStep);
  process.exit(1);
}, 60000).unref();

main().then(() => process.exit(0), (e) => {
  console.log('FAIL ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
