package rollout

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// memObjects is an in-memory bucket with S3's conditional-write rules
// (If-None-Match: * and If-Match on the ETag), for the ObjectStore's
// tests that need no HTTP: the crash-point test runs over it.
type memObjects struct {
	mu   sync.Mutex
	objs map[string][]byte
	puts map[string]int
}

// hooked wraps a bucket for the scenarios: down makes every call fail as
// an unreachable endpoint would; beforePut runs before each put reaches
// the bucket, where a test edits the state between an engine's read and
// its write.
type hooked struct {
	Objects
	down      atomic.Bool
	beforePut func(key string)
}

func (h *hooked) Get(ctx context.Context, key string) ([]byte, string, error) {
	if h.down.Load() {
		return nil, "", errUnreachable
	}
	return h.Objects.Get(ctx, key)
}

func (h *hooked) Put(ctx context.Context, key string, data []byte, cond PutCond) (string, error) {
	if h.down.Load() {
		return "", errUnreachable
	}
	if h.beforePut != nil {
		h.beforePut(key)
	}
	return h.Objects.Put(ctx, key, data, cond)
}

func (h *hooked) List(ctx context.Context, prefix, delimiter string) ([]string, []string, error) {
	if h.down.Load() {
		return nil, nil, errUnreachable
	}
	return h.Objects.List(ctx, prefix, delimiter)
}

func (h *hooked) Delete(ctx context.Context, key string) error {
	if h.down.Load() {
		return errUnreachable
	}
	return h.Objects.Delete(ctx, key)
}

// set and get bypass the hooks.
func (h *hooked) set(t *testing.T, key string, data []byte) {
	if _, err := h.Objects.Put(context.Background(), key, data, PutCond{}); err != nil {
		t.Error(err)
	}
}

func (h *hooked) get(t *testing.T, key string) []byte {
	b, _, err := h.Objects.Get(context.Background(), key)
	if err != nil {
		t.Error(err)
	}
	return b
}

var errUnreachable = errors.New("dial tcp 127.0.0.1:9: connect: connection refused")

func newMemObjects() *memObjects {
	return &memObjects{objs: map[string][]byte{}, puts: map[string]int{}}
}

func etagOf(b []byte) string {
	h := md5.Sum(b)
	return `"` + hex.EncodeToString(h[:]) + `"`
}

func (m *memObjects) Get(_ context.Context, key string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok {
		return nil, "", ErrNoObject
	}
	return slices.Clone(b), etagOf(b), nil
}

func (m *memObjects) Put(_ context.Context, key string, data []byte, cond PutCond) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.objs[key]
	if cond.IfNoneMatch && ok {
		return "", ErrPrecondition
	}
	if cond.IfMatch != "" && (!ok || etagOf(cur) != cond.IfMatch) {
		return "", ErrPrecondition
	}
	m.objs[key] = slices.Clone(data)
	m.puts[key]++
	return etagOf(data), nil
}

func (m *memObjects) List(_ context.Context, prefix, delimiter string) ([]string, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys, prefixes []string
	for k := range m.objs {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if delimiter != "" {
			if i := strings.Index(rest, delimiter); i >= 0 {
				p := prefix + rest[:i+len(delimiter)]
				if !slices.Contains(prefixes, p) {
					prefixes = append(prefixes, p)
				}
				continue
			}
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	slices.Sort(prefixes)
	return keys, prefixes, nil
}

func (m *memObjects) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}
