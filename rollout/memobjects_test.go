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
)

// memObjects is an in-memory bucket with S3's conditional-write rules
// (If-None-Match: * and If-Match on the ETag), for the ObjectStore's
// tests that need no HTTP: the crash-point test runs over it.
type memObjects struct {
	mu   sync.Mutex
	objs map[string][]byte
	// down makes every call fail as an unreachable endpoint would.
	down atomic.Bool
	// beforePut, when set, runs before each put's condition is checked
	// (outside the lock): tests edit the state there, between an
	// engine's read and its write.
	beforePut func(key string)
	puts      map[string]int
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
	if m.down.Load() {
		return nil, "", errUnreachable
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok {
		return nil, "", ErrNoObject
	}
	return slices.Clone(b), etagOf(b), nil
}

func (m *memObjects) Put(_ context.Context, key string, data []byte, cond PutCond) (string, error) {
	if m.down.Load() {
		return "", errUnreachable
	}
	if m.beforePut != nil {
		m.beforePut(key)
	}
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
	if m.down.Load() {
		return nil, nil, errUnreachable
	}
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
	if m.down.Load() {
		return errUnreachable
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}

func (m *memObjects) set(key string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = slices.Clone(data)
}

func (m *memObjects) get(key string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.objs[key])
}
