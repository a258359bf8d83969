// faye-server.js runs Faye's own Node.js Bayeux server (faye@1.4.3, with its
// websocket transport) as the peer that wsfleet is compared with and tested
// against. It mounts Bayeux at /bayeux and adds POST /publish, the same
// admin publish endpoint wsfleet serve has (Authorization: Bearer <token>,
// body one Bayeux message or an array), so that one load generator drives
// both servers the same way.
//
// usage: node faye-server.js [--port N] [--host H] [--token T] [--timeout S]
// It prints one line {"listening":"host:port"} on stdout once it listens.
// faye is found through NODE_PATH (e.g. compat/node_modules).
'use strict';

const http = require('http');
const faye = require('faye');

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const host = arg('host', '127.0.0.1');
const port = parseInt(arg('port', '0'), 10);
const token = arg('token', process.env.WSFLEET_ADMIN_TOKEN || '');
const timeout = parseFloat(arg('timeout', '45'));

const bayeux = new faye.NodeAdapter({ mount: '/bayeux', timeout: timeout });
const publisher = bayeux.getClient();

function publish(req, res) {
  if (token && req.headers['authorization'] !== 'Bearer ' + token) {
    res.writeHead(401, { 'Content-Type': 'application/json' });
    res.end('{"error":"unauthorized"}');
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let msgs;
    try {
      msgs = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      res.writeHead(400, { 'Content-Type': 'application/json' });
      res.end('{"error":"bad json"}');
      return;
    }
    if (!Array.isArray(msgs)) msgs = [msgs];
    for (const m of msgs) {
      if (!m || typeof m.channel !== 'string') {
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end('{"error":"message without channel"}');
        return;
      }
    }
    // The in-process client hands each message to the engine synchronously
    // when it is already connected, which it is after the first publish.
    for (const m of msgs) publisher.publish(m.channel, m.data);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ published: msgs.length }));
  });
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/publish') return publish(req, res);
  if (req.url === '/healthz') {
    res.writeHead(200);
    res.end('ok');
    return;
  }
  res.writeHead(404);
  res.end();
});
bayeux.attach(server);
server.listen(port, host, () => {
  const a = server.address();
  process.stdout.write(JSON.stringify({ listening: a.address + ':' + a.port }) + '\n');
});

function shutdown() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
