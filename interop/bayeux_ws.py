"""A Bayeux client over websocket written with Python's websockets library
(Debian's python3-websockets, 10.4, asyncio API), for interop/python_test.go.

    /usr/bin/python3 bayeux_ws.py URL SCENARIO [COUNT]

It handshakes with connectionType websocket and keeps a /meta/connect
pending the way faye does: the next connect goes out when the reply to the
previous one arrives. It prints one JSON object a line, which the Go test
reads and judges:

    {"event":"ready"}                      subscribed, connect loop running
    {"event":"reply","channel":...,"successful":...,"fragmented":...}
    {"event":"data","channel":...,"data":...}
    {"event":"connect","successful":...,"advice":...}
    {"event":"pong","size":N}              the pong answering a ping of N bytes
    {"event":"closed","code":N,"reason":...}
    {"event":"error","error":...}          then exit status 1

Scenarios:

    basic COUNT   subscribe to /py/basic and /py/* and take COUNT deliveries
                  (the test publishes them), then disconnect and close 1000
    fragmented    subscribe as one text message in 3 fragments with pauses
                  and a ping between them, then publish fragmented messages
                  (one of 60 KB) and receive them back
    ping          pings of 0, 7 and 125 bytes on an idle socket, each
                  awaited until its pong
    drain         stay until the node closes the socket; report its code
"""

import asyncio
import json
import sys

import websockets

# How long any one step may take before the scenario gives up.
STEP_TIMEOUT = 10


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


class Client:
    """One Bayeux session on one websocket."""

    def __init__(self, ws):
        self.ws = ws
        self.client_id = None
        self.last_id = 0
        self.waiting = {}  # id -> future of the reply
        self.stopping = False
        self.data = asyncio.Queue()  # deliveries, in arrival order

    def message(self, channel, **fields):
        self.last_id += 1
        m = {"channel": channel, "id": str(self.last_id), **fields}
        if self.client_id is not None:
            m["clientId"] = self.client_id
        return m

    async def request(self, m, fragments=None):
        """Sends m (as one frame, or split into fragments by fragments) and
        waits for its reply."""
        fut = asyncio.get_running_loop().create_future()
        self.waiting[m["id"]] = fut
        text = json.dumps([m], ensure_ascii=False)
        await self.ws.send(fragments(text) if fragments else text)
        reply = await asyncio.wait_for(fut, STEP_TIMEOUT)
        if m["channel"] != "/meta/connect":
            emit("reply", channel=m["channel"], successful=reply.get("successful"),
                 error=reply.get("error"), fragmented=fragments is not None)
        return reply

    async def read(self):
        """Reads every frame until the socket closes; returns the close
        code and reason the node sent."""
        try:
            async for frame in self.ws:
                for m in json.loads(frame):
                    self.dispatch(m)
        except websockets.ConnectionClosed:
            pass
        return self.ws.close_code, self.ws.close_reason

    def dispatch(self, m):
        # only replies answer a request: a delivery may carry the id its
        # publisher gave it, which can equal one of ours.
        fut = self.waiting.pop(m.get("id"), None) if "successful" in m else None
        if m.get("channel") == "/meta/connect":
            emit("connect", successful=m.get("successful"), advice=m.get("advice"))
            if not self.stopping and m.get("successful"):
                asyncio.get_running_loop().create_task(self.connect())
        elif not m.get("channel", "").startswith("/meta/") and "successful" not in m:
            emit("data", channel=m["channel"], data=m.get("data"))
            self.data.put_nowait(m)
        if fut is not None and not fut.done():
            fut.set_result(m)

    async def connect(self):
        try:
            await self.ws.send(json.dumps([self.message("/meta/connect", connectionType="websocket")]))
        except websockets.ConnectionClosed:
            pass  # the reader reports the close

    async def handshake(self):
        reply = await self.request(self.message(
            "/meta/handshake", version="1.0", supportedConnectionTypes=["websocket"]))
        if not reply.get("successful"):
            raise RuntimeError(f"handshake refused: {reply}")
        self.client_id = reply["clientId"]
        await self.connect()

    async def subscribe(self, channel, fragments=None):
        reply = await self.request(self.message("/meta/subscribe", subscription=channel), fragments)
        if not reply.get("successful"):
            raise RuntimeError(f"subscribe {channel} refused: {reply}")

    async def publish(self, channel, data, fragments=None):
        reply = await self.request(self.message(channel, data=data), fragments)
        if not reply.get("successful"):
            raise RuntimeError(f"publish to {channel} refused: {reply}")
        m = await asyncio.wait_for(self.data.get(), STEP_TIMEOUT)
        if m["channel"] != channel or m.get("data") != data:
            raise RuntimeError(f"published {channel} {data!r}, received {m}")

    async def leave(self):
        """Disconnects from the session and closes the socket with 1000."""
        self.stopping = True
        await self.request(self.message("/meta/disconnect"))
        await self.ws.close(1000, "done")


def split(n, ping=None, pause=0.05):
    """Returns a fragmenter for Client.request: the text in n pieces, sent
    as an asynchronous iterator that waits pause between pieces (so that
    the node sees a message half assembled on an idle socket) and, when
    ping is given, awaits ping() after the first piece (a control frame
    between fragments, which RFC 6455 allows)."""
    async def fragments(text):
        step = -(-len(text) // n)
        for i in range(0, len(text), step):
            yield text[i:i + step]
            if i == 0 and ping is not None:
                await ping()
            await asyncio.sleep(pause)
    return fragments


async def basic(c, count):
    for ch in ("/py/basic", "/py/*"):
        await c.subscribe(ch)
    emit("ready")
    for _ in range(count):
        await asyncio.wait_for(c.data.get(), STEP_TIMEOUT)
    await c.leave()


async def fragmented(c, _):
    pongs = []

    async def ping():
        pongs.append(await c.ws.ping(b"between fragments"))

    await c.subscribe("/py/frag", split(3, ping))
    await asyncio.wait_for(pongs[0], STEP_TIMEOUT)
    emit("pong", size=len(b"between fragments"))
    await c.publish("/py/frag", {"text": "fragmented, d\u00e9j\u00e0 vu \u2603"}, split(3))
    await c.publish("/py/frag", {"text": "x" * 60000}, split(12, pause=0))
    await c.leave()


async def ping(c, _):
    await asyncio.sleep(0.2)  # let the node park the socket as idle
    for payload in (b"", b"wsfleet", bytes(range(125))):
        waiter = await c.ws.ping(payload)
        await asyncio.wait_for(waiter, STEP_TIMEOUT)
        emit("pong", size=len(payload))
    await c.leave()


async def drain(c, _):
    await c.subscribe("/py/drain")
    emit("ready")
    # the reader returns when the node closes the socket


SCENARIOS = {"basic": basic, "fragmented": fragmented, "ping": ping, "drain": drain}


async def main(url, scenario, count):
    # no keepalive pings of the library's own: the ping scenario sends them.
    async with websockets.connect(url, ping_interval=None, open_timeout=STEP_TIMEOUT,
                                  close_timeout=STEP_TIMEOUT) as ws:
        c = Client(ws)
        reader = asyncio.create_task(c.read())
        await c.handshake()
        await SCENARIOS[scenario](c, count)
        code, reason = await asyncio.wait_for(reader, 30)
        emit("closed", code=code, reason=reason)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[2] not in SCENARIOS:
        sys.exit(f"usage: bayeux_ws.py URL {'|'.join(SCENARIOS)} [COUNT]")
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0))
    except Exception as e:  # reported to the Go test, which prints it
        emit("error", error=f"{type(e).__name__}: {e}")
        sys.exit(1)
