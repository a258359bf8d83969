'use strict';
// Holds COUNT faye or halley clients subscribed to CHANNEL and records the
// `n` of every message each receives. Driven by cluster_test.go:
//
//   node listen.js CLIENT TRANSPORT COUNT CHANNEL
//
// Prints "ready" once every client's subscription is acknowledged. Each
// line "report" on stdin prints one JSON line
// {"clients":[{"kind","got":[n…],"handshakes"}]}; "exit" ends the process.

const readline = require('readline');
const faye = require('faye');
const halley = require('halley');

const [kind, transport, countArg, channel] = process.argv.slice(2);
const endpoint = process.env.WSFLEET_URL + '/bayeux';
const count = Number(countArg);

function track(rec) {
  return {
    incoming(message, callback) {
      if (message.channel === '/meta/handshake' && message.successful) rec.handshakes++;
      callback(message);
    },
  };
}

async function start() {
  const recs = [];
  const waits = [];
  for (let i = 0; i < count; i++) {
    const rec = { kind: kind + '/' + transport, got: [], handshakes: 0, maxGapMs: 0 };
    recs.push(rec);
    let last = 0;
    const onMessage = (m) => {
      const now = Date.now();
      if (last && now - last > rec.maxGapMs) rec.maxGapMs = now - last;
      last = now;
      rec.got.push(m.n);
    };
    if (kind === 'faye') {
      // faye's defaults: a request that fails is sent again after 5 s
      const c = new faye.Client(endpoint);
      if (transport === 'long-polling') c.disable('websocket');
      c.addExtension(track(rec));
      const s = c.subscribe(channel, onMessage);
      waits.push(new Promise((res, rej) => s.then(() => res(), rej)));
    } else {
      const opts = transport === 'long-polling' ? { disabled: ['websocket'] } : { connectionTypes: ['websocket'] };
      const c = new halley.Client(endpoint, opts);
      c.addExtension(track(rec));
      waits.push(Promise.resolve(c.subscribe(channel, onMessage)).then(() => {}));
    }
  }
  await Promise.all(waits);
  console.log('ready');
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line === 'report') console.log(JSON.stringify({ clients: recs }));
    if (line === 'exit') process.exit(0);
  });
}

start().catch((e) => {
  console.log('FAIL ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
