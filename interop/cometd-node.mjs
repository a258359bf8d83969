// The CometD JavaScript client, unmodified, in Node.js: cometd-nodejs-client
// supplies XMLHttpRequest and WebSocket; this module adds a recorder of
// what the client sends and, for callback-polling (JSONP, where CometD
// loads each response as a <script> element), the one thing a browser
// would do: fetch the script's URL and run the JavaScript that comes back,
// refusing it (as a browser does with nosniff) unless it is served as
// JavaScript. Used by scenario.mjs and listen.mjs.

import vm from 'node:vm';
import { adapt } from 'cometd-nodejs-client';
import { CometD } from 'cometd';

adapt();

// requests counts what the client sends: one entry per HTTP request or
// websocket frame, holding the Bayeux messages it carried.
export const requests = [];

function record(body) {
  try {
    const msgs = JSON.parse(body);
    requests.push(Array.isArray(msgs) ? msgs : [msgs]);
  } catch {
    requests.push([]);
  }
}

{
  const send = window.XMLHttpRequest.prototype.send;
  window.XMLHttpRequest.prototype.send = function (data) {
    record(data);
    return send.call(this, data);
  };
  const wsSend = window.WebSocket.prototype.send;
  window.WebSocket.prototype.send = function (data, ...rest) {
    record(data);
    return wsSend.call(this, data, ...rest);
  };
}

// installJSONP gives CometD's callback-polling transport a minimal
// document whose <script> elements load over HTTP.
let jsonpInstalled = false;

function installJSONP() {
  if (jsonpInstalled) return;
  jsonpInstalled = true;
  const head = {
    appendChild(script) {
      const url = new URL(script.src);
      const callback = url.searchParams.get('jsonp');
      // CometD numbers its callbacks per client, so two clients in one
      // page reuse names: a CometD limitation, not the server's. Bind
      // the script to the function of its own request.
      const fn = window[callback];
      record(url.searchParams.get('message'));
      (async () => {
        const res = await fetch(url);
        const type = (res.headers.get('content-type') || '').split(';')[0].trim();
        const text = await res.text();
        if (res.status !== 200) throw new Error('HTTP ' + res.status + ': ' + text);
        if (!/^(text|application)\/javascript$/.test(type)) {
          throw new Error('refused to run a script served as ' + type);
        }
        // run it as a browser does: in the page's realm, where the
        // callback is a global.
        globalThis[callback] = fn;
        try {
          new vm.Script(text).runInThisContext({ timeout: 1000 });
        } finally {
          delete globalThis[callback];
        }
      })().catch((e) => {
        console.error('jsonp: ' + e.message);
        script.onerror({ type: 'error' });
      });
    },
    removeChild() {},
  };
  window.document = {
    getElementsByTagName: (name) => (name === 'head' ? [head] : []),
    createElement: () => ({}),
  };
}

// newClient returns a CometD client for endpoint restricted to one
// transport.
export function newClient(transport, endpoint) {
  const c = new CometD();
  switch (transport) {
    case 'websocket':
      c.unregisterTransport('long-polling');
      c.unregisterTransport('callback-polling');
      break;
    case 'long-polling':
      c.unregisterTransport('websocket');
      c.unregisterTransport('callback-polling');
      break;
    case 'callback-polling':
      installJSONP();
      c.unregisterTransport('websocket');
      c.unregisterTransport('long-polling');
      break;
    default:
      throw new Error('unknown transport ' + transport);
  }
  c.configure({ url: endpoint, logLevel: 'warn', maxNetworkDelay: 5000 });
  return c;
}
