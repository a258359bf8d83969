package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Objects is the subset of S3 the ObjectStore needs, keyed within one
// bucket. provider/aws implements it with aws-sdk-go-v2's S3 client;
// tests with a map.
type Objects interface {
	// Get returns an object and its ETag, or ErrNoObject.
	Get(ctx context.Context, key string) ([]byte, string, error)
	// Put writes an object under cond and returns its new ETag. A
	// failed condition is ErrPrecondition (412); a conditional write
	// racing another is ErrConflict (409 ConditionalRequestConflict).
	Put(ctx context.Context, key string, data []byte, cond PutCond) (string, error)
	// List returns the keys under prefix and, with delimiter "/", the
	// common prefixes one level down, every page of them.
	List(ctx context.Context, prefix, delimiter string) (keys, prefixes []string, err error)
	// Delete removes an object; a missing one is no error.
	Delete(ctx context.Context, key string) error
}

// PutCond is a conditional write: IfNoneMatch creates only (If-None-Match:
// *); IfMatch overwrites only the version with that ETag. Neither: an
// unconditional write.
type PutCond struct {
	IfNoneMatch bool
	IfMatch     string
}

// The answers of Objects the ObjectStore tells apart.
var (
	ErrNoObject     = errors.New("no such object")
	ErrPrecondition = errors.New("precondition failed (412)")
	ErrConflict     = errors.New("conditional request conflict (409)")
)

// ObjectStore keeps changes under an S3 prefix, one folder per change:
//
//	PREFIX/CHANGE/state.json          the state, written with conditional writes
//	PREFIX/CHANGE/control             a pending pause, run, abort or rollback
//	PREFIX/CHANGE/events/NNNNNNNNNN.jsonl  the event log, one object per batch
//	PREFIX/CHANGE/report.md           the report, once the change ends
//
// The state is created with If-None-Match: * and every later write
// carries If-Match with the ETag of the version the writer read or last
// wrote, so a write based on a stale read is refused (ErrStateChanged)
// instead of overwriting, and two engines can never both hold a change.
type ObjectStore struct {
	Objects Objects
	URL     StateURL
	// Timeout bounds each request; default 30s.
	Timeout time.Duration

	mu    sync.Mutex
	etags map[string]string // change → ETag of the state this process last claimed or wrote
	next  map[string]int    // change → next event batch number
}

// NewObjectStore returns the store for the prefix of u over objs.
func NewObjectStore(objs Objects, u StateURL) *ObjectStore {
	return &ObjectStore{Objects: objs, URL: u}
}

func (s *ObjectStore) key(change string, parts ...string) string {
	return path.Join(append([]string{s.URL.Prefix, change}, parts...)...)
}

func (s *ObjectStore) ctx() (context.Context, context.CancelFunc) {
	to := s.Timeout
	if to == 0 {
		to = 30 * time.Second
	}
	return context.WithTimeout(context.Background(), to)
}

// Location is the store's s3:// URL.
func (s *ObjectStore) Location() string { return s.URL.String() }

func (s *ObjectStore) get(change string) (*State, string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	data, etag, err := s.Objects.Get(ctx, s.key(change, "state.json"))
	if errors.Is(err, ErrNoObject) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", unavailable(err)
	}
	st := &State{}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, "", fmt.Errorf("decode %s: %w", s.key(change, "state.json"), err)
	}
	return st, etag, nil
}

// unavailable marks an error other than a refused condition as the
// backend being out of reach.
func unavailable(err error) error {
	if errors.Is(err, ErrPrecondition) || errors.Is(err, ErrConflict) || errors.Is(err, ErrNoObject) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrStateUnavailable, err)
}

// Load reads the state of change and its pending command. It does not
// change the version this process writes over: only Update and put do.
func (s *ObjectStore) Load(change string) (*State, error) {
	st, _, err := s.get(change)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", change, err)
	}
	if st == nil {
		return nil, fmt.Errorf("load %s: %w", change, ErrNoRollout)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if c, _, err := s.Objects.Get(ctx, s.key(change, "control")); err == nil {
		st.Control = string(c)
	}
	return st, nil
}

// updateAttempts bounds Update's re-reads after losing a race.
const updateAttempts = 8

// Update reads the state and its ETag, calls fn, and writes the result
// with If-Match on that ETag (If-None-Match: * when there was none).
// Losing the race (412) or meeting a concurrent conditional write (409)
// reads again and calls fn again on the state as the winner left it, so
// fn always decides on what is stored.
func (s *ObjectStore) Update(change string, fn func(*State) (*State, error)) (*State, error) {
	for attempt := 0; ; attempt++ {
		cur, etag, err := s.get(change)
		if err != nil {
			return nil, fmt.Errorf("save %s: %w", change, err)
		}
		next, err := fn(cur)
		if err != nil {
			return nil, fmt.Errorf("save %s: %w", change, err)
		}
		if next == nil {
			return nil, nil
		}
		data, err := json.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("save %s: %w", change, err)
		}
		cond := PutCond{IfMatch: etag, IfNoneMatch: etag == ""}
		ctx, cancel := s.ctx()
		tag, err := s.Objects.Put(ctx, s.key(change, "state.json"), data, cond)
		cancel()
		if (errors.Is(err, ErrPrecondition) || errors.Is(err, ErrConflict)) && attempt+1 < updateAttempts {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("save %s: %w", change, unavailable(err))
		}
		s.setETag(change, tag)
		return next, nil
	}
}

func (s *ObjectStore) setETag(change, tag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.etags == nil {
		s.etags = map[string]string{}
	}
	s.etags[change] = tag
}

func (s *ObjectStore) etag(change string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etags[change]
}

// put writes the engine's state with If-Match on the ETag of its last
// read or write (If-None-Match: * when it has none). 412: someone else
// wrote the state since: ErrStateChanged, nothing written. 409: another
// conditional write was in flight; read the ETag again and, if the state
// is still ours, write again.
func (s *ObjectStore) put(change string, data []byte) error {
	for attempt := 0; ; attempt++ {
		etag := s.etag(change)
		ctx, cancel := s.ctx()
		tag, err := s.Objects.Put(ctx, s.key(change, "state.json"), data, PutCond{IfMatch: etag, IfNoneMatch: etag == ""})
		cancel()
		switch {
		case err == nil:
			s.setETag(change, tag)
			return nil
		case errors.Is(err, ErrPrecondition):
			return fmt.Errorf("save %s: %w (412 on If-Match %s)", change, ErrStateChanged, etag)
		case errors.Is(err, ErrConflict) && attempt+1 < updateAttempts:
			_, now, gerr := s.get(change)
			if gerr != nil {
				return fmt.Errorf("save %s: %w", change, gerr)
			}
			if now != etag {
				return fmt.Errorf("save %s: %w (409, then ETag %s, not %s)", change, ErrStateChanged, now, etag)
			}
			continue
		default:
			return fmt.Errorf("save %s: %w", change, unavailable(err))
		}
	}
}

// SetControl leaves a command for change's engine.
func (s *ObjectStore) SetControl(change, control string) (*State, error) {
	st, err := s.Load(change)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.Objects.Put(ctx, s.key(change, "control"), []byte(control), PutCond{}); err != nil {
		return nil, fmt.Errorf("control %s: %w", change, unavailable(err))
	}
	st.Control = control
	return st, nil
}

// TakeControl returns and removes the pending command for change.
func (s *ObjectStore) TakeControl(change string) (string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	c, _, err := s.Objects.Get(ctx, s.key(change, "control"))
	if errors.Is(err, ErrNoObject) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("control %s: %w", change, unavailable(err))
	}
	if err := s.Objects.Delete(ctx, s.key(change, "control")); err != nil {
		return "", fmt.Errorf("control %s: %w", change, unavailable(err))
	}
	return string(c), nil
}

// List returns the state of every change under the prefix.
func (s *ObjectStore) List() ([]*State, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	base := s.URL.Prefix
	if base != "" {
		base += "/"
	}
	_, dirs, err := s.Objects.List(ctx, base, "/")
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", s.Location(), unavailable(err))
	}
	var out []*State
	for _, d := range dirs {
		change := strings.TrimSuffix(strings.TrimPrefix(d, base), "/")
		st, _, err := s.get(change)
		if err != nil {
			return nil, err
		}
		if st != nil {
			out = append(out, st)
		}
	}
	return out, nil
}

// OpenEventLog continues change's event log: the events are kept in
// memory and written as one new object per batch (see EventLog.Flush),
// each created with If-None-Match: * under the next batch number, so
// that no batch is ever overwritten and readers see them in order.
func (s *ObjectStore) OpenEventLog(change string, extra io.Writer) (*EventLog, error) {
	l := NewEventLog(extra)
	if extra == nil {
		l.out = nil
	}
	l.flush = func(batch []byte) error { return s.appendEvents(change, batch) }
	return l, nil
}

// appendEvents writes one batch of events. The batch number is one more
// than the highest stored; a 412 (another writer took the number) lists
// again and takes the next.
func (s *ObjectStore) appendEvents(change string, batch []byte) error {
	ctx, cancel := s.ctx()
	defer cancel()
	for attempt := 0; attempt < updateAttempts; attempt++ {
		n, err := s.nextBatch(ctx, change, attempt > 0)
		if err != nil {
			return err
		}
		_, err = s.Objects.Put(ctx, s.key(change, "events", fmt.Sprintf("%010d.jsonl", n)), batch, PutCond{IfNoneMatch: true})
		if errors.Is(err, ErrPrecondition) || errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("event log %s: %w", change, unavailable(err))
		}
		s.mu.Lock()
		s.next[change] = n + 1
		s.mu.Unlock()
		return nil
	}
	return fmt.Errorf("event log %s: batch numbers kept being taken", change)
}

func (s *ObjectStore) nextBatch(ctx context.Context, change string, relist bool) (int, error) {
	s.mu.Lock()
	n, ok := s.next[change]
	s.mu.Unlock()
	if ok && !relist {
		return n, nil
	}
	keys, err := s.eventKeys(ctx, change)
	if err != nil {
		return 0, err
	}
	n = 1
	if len(keys) > 0 {
		last, err := strconv.Atoi(strings.TrimSuffix(path.Base(keys[len(keys)-1]), ".jsonl"))
		if err != nil {
			return 0, fmt.Errorf("event log %s: unexpected object %s", change, keys[len(keys)-1])
		}
		n = last + 1
	}
	s.mu.Lock()
	if s.next == nil {
		s.next = map[string]int{}
	}
	s.next[change] = n
	s.mu.Unlock()
	return n, nil
}

func (s *ObjectStore) eventKeys(ctx context.Context, change string) ([]string, error) {
	keys, _, err := s.Objects.List(ctx, s.key(change, "events")+"/", "")
	if err != nil {
		return nil, fmt.Errorf("event log %s: %w", change, unavailable(err))
	}
	keys = slices.DeleteFunc(keys, func(k string) bool { return !strings.HasSuffix(k, ".jsonl") })
	slices.Sort(keys)
	return keys, nil
}

// ReadEvents returns the batches of change's event log in order.
func (s *ObjectStore) ReadEvents(change string) ([]byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	keys, err := s.eventKeys(ctx, change)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, k := range keys {
		data, _, err := s.Objects.Get(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("event log %s: %w", change, unavailable(err))
		}
		buf.Write(data)
	}
	return buf.Bytes(), nil
}

// WriteReport stores the report beside the state.
func (s *ObjectStore) WriteReport(change string, report []byte) (string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	k := s.key(change, "report.md")
	if _, err := s.Objects.Put(ctx, k, report, PutCond{}); err != nil {
		return "", fmt.Errorf("report %s: %w", change, unavailable(err))
	}
	return "s3://" + s.URL.Bucket + "/" + k, nil
}

// Push stores a change moved from elsewhere (wsfleet state push): its
// state, created with If-None-Match: * so that a change already under the
// prefix is never overwritten, then its event log as one batch and its
// report. The lease is dropped: whoever resumes it next takes it.
func (s *ObjectStore) Push(st *State, events, report []byte) error {
	st.Lease = time.Time{}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("push %s: %w", st.Change, err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.Objects.Put(ctx, s.key(st.Change, "state.json"), data, PutCond{IfNoneMatch: true}); err != nil {
		if errors.Is(err, ErrPrecondition) || errors.Is(err, ErrConflict) {
			return fmt.Errorf("push %s: %s already holds a change of that id; nothing was written", st.Change, s.Location())
		}
		return fmt.Errorf("push %s: %w", st.Change, unavailable(err))
	}
	if len(events) > 0 {
		if err := s.appendEvents(st.Change, events); err != nil {
			return fmt.Errorf("push %s: the state is stored, the event log is not: %w", st.Change, err)
		}
	}
	if len(report) > 0 {
		if _, err := s.WriteReport(st.Change, report); err != nil {
			return fmt.Errorf("push %s: the state and event log are stored, the report is not: %w", st.Change, err)
		}
	}
	return nil
}
