// Holds COUNT CometD clients on one transport, subscribed to CHANNEL, and
// records the `n` of every message each receives. Driven by
// cluster_test.go:
//
//   node listen.mjs TRANSPORT COUNT CHANNEL
//
// Prints "ready" once every client's subscription is acknowledged. Each
// line "report" on stdin prints one JSON line
// {"clients":[{"kind","got":[n…],"handshakes","maxGapMs"}]}; "exit" ends
// the process.

import readline from 'node:readline';
import { newClient } from './cometd-node.mjs';

const [transport, countArg, channel] = process.argv.slice(2);
const endpoint = process.env.WSFLEET_URL + '/bayeux';
const count = Number(countArg);

const recs = [];
const waits = [];
for (let i = 0; i < count; i++) {
  const rec = { kind: 'cometd/' + transport, got: [], handshakes: 0, maxGapMs: 0 };
  recs.push(rec);
  let last = 0;
  const c = newClient(transport, endpoint);
  waits.push(new Promise((resolve, reject) => {
    // subscribing from the handshake listener, as CometD's documentation
    // recommends, resubscribes after a re-handshake: a lost session then
    // shows as missing messages, not as silence.
    c.addListener('/meta/handshake', (m) => {
      if (!m.successful) return;
      rec.handshakes++;
      c.subscribe(channel, (msg) => {
        const now = Date.now();
        if (last && now - last > rec.maxGapMs) rec.maxGapMs = now - last;
        last = now;
        rec.got.push(msg.data.n);
      }, (reply) => (reply.successful ? resolve() : reject(new Error('subscribe: ' + JSON.stringify(reply)))));
    });
    c.handshake();
  }));
}

try {
  await Promise.all(waits);
} catch (e) {
  console.log('FAIL ' + e.message);
  process.exit(1);
}
console.log('ready');
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line === 'report') console.log(JSON.stringify({ clients: recs }));
  if (line === 'exit') process.exit(0);
});
