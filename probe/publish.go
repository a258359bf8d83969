package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Publish states of one message.
const (
	pubInFlight uint8 = iota
	pubOK
	pubFailed
)

// pubRecord is one published message: when its publish was sent and
// whether the server acknowledged it.
type pubRecord struct {
	start time.Time
	state uint8
}

// channelLog is what was published on one channel; message n of the
// channel is recs[n]. The single publisher appends in time order.
type channelLog struct {
	name string
	mu   sync.Mutex
	recs []pubRecord
	// count is len(recs), readable without the lock: a delivery numbered
	// at or above it was not published by this probe.
	count atomic.Int64
}

// maxBatch caps what one tick sends; when the publisher falls further
// behind than that (a server that takes seconds to answer) it skips the backlog rather
// than bursting it, and counts the skip.
const maxBatch = 2000

// publishLoop publishes Rate messages per second round robin over the
// channels, sending what is due every PublishInterval in POSTs of at most
// postBatch messages.
func (p *Probe) publishLoop(ctx context.Context) {
	if p.cfg.Rate == 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(p.cfg.PublishInterval)
	defer t.Stop()
	begin := p.now()
	issued, rr := int64(0), 0
	var body bytes.Buffer
	var refs []ref
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due := int64(p.cfg.Rate*p.now().Sub(begin).Seconds()) - issued
		if due <= 0 {
			continue
		}
		if due > maxBatch {
			p.countError("publish_behind")
			issued += due - maxBatch
			due = maxBatch
		}
		issued += due
		for due > 0 {
			k := min(due, postBatch)
			due -= k
			p.publishBatch(ctx, int(k), &rr, &body, &refs)
		}
	}
}

// postBatch is the most messages in one POST: the ws node refuses
// requests of more than --max-batch (default 100) messages.
const postBatch = 100

// ref names message n of channel c.
type ref struct{ c, n int }

// publishBatch records and sends k messages in one POST.
func (p *Probe) publishBatch(ctx context.Context, k int, rr *int, body *bytes.Buffer, refs *[]ref) {
	now := p.now()
	body.Reset()
	*refs = (*refs)[:0]
	body.WriteByte('[')
	for i := 0; i < k; i++ {
		c := *rr % len(p.channels)
		*rr++
		cl := p.channels[c]
		cl.mu.Lock()
		n := len(cl.recs)
		cl.recs = append(cl.recs, pubRecord{start: now})
		cl.count.Store(int64(len(cl.recs)))
		cl.mu.Unlock()
		*refs = append(*refs, ref{c, n})
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"channel":"`)
		body.WriteString(cl.name)
		body.WriteString(`","data":`)
		body.WriteString(p.dataPrefix)
		body.WriteString(`,"c":`)
		body.WriteString(strconv.Itoa(c))
		body.WriteString(`,"n":`)
		body.WriteString(strconv.Itoa(n))
		body.WriteString(`,"t":`)
		body.WriteString(strconv.FormatInt(now.UnixNano(), 10))
		body.WriteString(`}}`)
	}
	body.WriteByte(']')
	state := pubOK
	if err := p.post(ctx, body.Bytes()); err != nil {
		state = pubFailed
		kind := "publish"
		var se statusError
		if errors.As(err, &se) {
			kind = fmt.Sprintf("publish_http_%d", int(se))
		}
		p.countError(kind)
		p.log.Debug("probe publish failed", "messages", k, "err", err)
	}
	for _, r := range *refs {
		cl := p.channels[r.c]
		cl.mu.Lock()
		cl.recs[r.n].state = state
		cl.mu.Unlock()
	}
}

// post sends one batch to the publish endpoint. An error means the
// messages may or may not have been accepted; the probe then expects none
// of them, so an ambiguous publish never counts as a loss.
func (p *Probe) post(ctx context.Context, body []byte) error {
	// A batch already sent is not abandoned when the probe stops: its
	// acknowledgement decides whether its messages are expected.
	ctx = context.WithoutCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.PublishURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if p.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.AdminToken)
	}
	resp, err := p.pubHC.Do(req)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("publish: %w", statusError(resp.StatusCode))
	}
	return nil
}

// statusError is an HTTP status other than 2xx from the publish endpoint.
type statusError int

func (e statusError) Error() string { return fmt.Sprintf("status %d", int(e)) }
