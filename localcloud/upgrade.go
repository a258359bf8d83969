package localcloud

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
)

// Websocket upgrades do not go through httputil.ReverseProxy: once
// upgraded it copies each direction with io.Copy, whose 32 KiB buffer
// per direction stays allocated for the connection's life, 64 KiB and
// more for every proxied websocket (at 20,000 clients the load balancer
// nodes held 61 KiB a connection, at 100,000 some 6 GB). A load balancer
// node holds thousands of mostly idle websockets, so here a direction
// waits for its source to be readable without a buffer and takes one
// from a pool only for the bytes at hand (copyReady).

// isUpgrade reports a websocket upgrade request (Connection: upgrade and
// Upgrade: websocket, tokens case-insensitive).
func isUpgrade(r *http.Request) bool {
	if !strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "websocket") {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// hopHeaders are removed from a proxied upgrade request as the reverse
// proxy removes them (Connection and Upgrade stay: they ask for the
// upgrade).
var hopHeaders = []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding"}

// upgradeHeadBytes bounds the buffer the target's answer to an upgrade is
// read with (its status line and headers; longer lines still parse).
const upgradeHeadBytes = 2048

// serveUpgrade proxies the websocket upgrade r to the target addr: the
// request goes out with the reverse proxy's X-Forwarded-* headers, a
// refusal (any answer but 101) goes back as it came, and an accepted
// upgrade joins the two connections, each direction copied by copyReady,
// until either side ends.
func (p *proxy) serveUpgrade(w http.ResponseWriter, r *http.Request, addr string, onProxied func(string, *http.Request, int)) {
	back, err := p.dial(r.Context(), addr)
	if err != nil {
		p.badGateway(w, err)
		return
	}
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.RequestURI = "http", addr, ""
	out.Host = r.Host
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Del("Forwarded")
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		out.Header.Set("X-Forwarded-For", ip)
	} else {
		out.Header.Del("X-Forwarded-For")
	}
	out.Header.Set("X-Forwarded-Host", r.Host)
	out.Header.Set("X-Forwarded-Proto", "http")
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // no Go default
	}
	out.Body = nil
	if err := out.Write(back); err != nil {
		back.Close()
		p.badGateway(w, err)
		return
	}
	br := bufio.NewReaderSize(back, upgradeHeadBytes)
	res, err := http.ReadResponse(br, out)
	if err != nil {
		back.Close()
		p.badGateway(w, err)
		return
	}
	if onProxied != nil {
		onProxied(addr, out, res.StatusCode)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		defer back.Close()
		defer res.Body.Close()
		for k, vs := range res.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(res.StatusCode)
		if _, err := io.Copy(w, res.Body); err != nil {
			p.log.Debug("load balancer: copy a refusal", "listener", p.addr, "err", err)
		}
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		back.Close()
		p.badGateway(w, errors.New("the response cannot be hijacked"))
		return
	}
	client, cbuf, err := hj.Hijack()
	if err != nil {
		back.Close()
		p.log.Debug("load balancer: hijack", "listener", p.addr, "err", err)
		return
	}
	if err := startUpgraded(client, cbuf.Reader, back, br, res, p.log.With("listener", p.addr)); err != nil {
		client.Close()
		back.Close()
		p.log.Debug("load balancer: websocket ended", "listener", p.addr, "err", err)
		return
	}
	// Nothing more here: the handler returns, and with it the server's
	// goroutine for the connection and its buffers; the two copies
	// started above carry the websocket.
}

// startUpgraded writes the target's 101 to the client, hands over what
// either side's reader already holds, and starts the copies of both
// directions (each closes both connections when its source ends).
func startUpgraded(client net.Conn, cr *bufio.Reader, back net.Conn, br *bufio.Reader, res *http.Response, log *slog.Logger) error {
	head := &strings.Builder{}
	fmt.Fprintf(head, "HTTP/1.1 %s\r\n", res.Status)
	if err := res.Header.Write(head); err != nil {
		return fmt.Errorf("101 headers: %w", err)
	}
	head.WriteString("\r\n")
	if _, err := io.WriteString(client, head.String()); err != nil {
		return fmt.Errorf("write 101: %w", err)
	}
	if err := handOver(client, br); err != nil {
		return fmt.Errorf("target's first bytes: %w", err)
	}
	if err := handOver(back, cr); err != nil {
		return fmt.Errorf("client's first bytes: %w", err)
	}
	end := func(dst io.Writer, src net.Conn) {
		err := copyReady(dst, src)
		client.Close()
		back.Close()
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			log.Debug("load balancer: websocket ended", "err", err)
		}
	}
	go end(back, client)
	go end(client, underlying(back))
	return nil
}

// handOver writes to dst what r has buffered already.
func handOver(dst io.Writer, r *bufio.Reader) error {
	n := r.Buffered()
	if n == 0 {
		return nil
	}
	b, err := r.Peek(n)
	if err != nil {
		return err
	}
	_, err = dst.Write(b)
	return err
}

// underlying is the connection a tracked one wraps: copyReady needs the
// descriptor (closing it still goes through the tracked one).
func underlying(c net.Conn) net.Conn {
	if t, ok := c.(*trackedConn); ok {
		return t.Conn
	}
	return c
}

// copyBufBytes is the size of the pooled buffers copyReady reads into.
const copyBufBytes = 16 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufBytes); return &b }}

// copyPooled copies src to dst with a pooled buffer held until src ends.
func copyPooled(dst io.Writer, src io.Reader) error {
	b := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(b)
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *b)
	if err == nil {
		return io.EOF
	}
	return err
}
