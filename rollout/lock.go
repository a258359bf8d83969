package rollout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockTag is the group tag that holds the rollout lock, so that the lock
// is visible to anyone looking at the group and shared by engines on
// different machines.
const LockTag = "wsfleet:lock"

// ErrLocked is wrapped by the error of a rollout refused because another
// one holds the group.
var ErrLocked = errors.New("group is locked by another rollout")

// LockInfo is a parsed lock tag: "<change>@<host>:<pid> until <RFC3339>".
type LockInfo struct {
	Change  string
	Host    string
	PID     int
	Expires time.Time
}

// Owner renders the holder as it appears in the tag.
func (l LockInfo) Owner() string { return fmt.Sprintf("%s@%s:%d", l.Change, l.Host, l.PID) }

func (l LockInfo) String() string {
	return l.Owner() + " until " + l.Expires.UTC().Format(time.RFC3339)
}

// ParseLock parses a lock tag value.
func ParseLock(v string) (LockInfo, bool) {
	owner, until, ok := strings.Cut(v, " until ")
	if !ok {
		return LockInfo{}, false
	}
	exp, err := time.Parse(time.RFC3339, until)
	if err != nil {
		return LockInfo{}, false
	}
	change, hostpid, ok := strings.Cut(owner, "@")
	if !ok {
		return LockInfo{}, false
	}
	i := strings.LastIndexByte(hostpid, ':')
	if i < 0 {
		return LockInfo{}, false
	}
	pid, err := strconv.Atoi(hostpid[i+1:])
	if err != nil {
		return LockInfo{}, false
	}
	return LockInfo{Change: change, Host: hostpid[:i], PID: pid, Expires: exp}, true
}

// Lock is this engine's hold on a group.
type Lock struct {
	Provider Provider
	Group    string
	Me       LockInfo // Expires is set on each acquire and renew
	TTL      time.Duration
	Now      func() time.Time
	// Settle is how long Acquire waits before reading the tag back to
	// see whether a concurrent writer won: tags have no compare-and-swap.
	Settle time.Duration
	// ReadBack bounds how long Acquire reads the tag again while it
	// still shows the value the write replaced: reads of tags lag
	// writes (eventual consistency).
	ReadBack time.Duration
	Sleep    func(ctx context.Context, d time.Duration) error

	replaced string // the tag's value before Acquire wrote it
}

// NewLock returns a lock for change on group held by this process.
func NewLock(p Provider, group, change string, ttl time.Duration, now func() time.Time) *Lock {
	host, _ := os.Hostname()
	return &Lock{Provider: p, Group: group, Me: LockInfo{Change: change, Host: host, PID: os.Getpid()}, TTL: ttl, Now: now, Settle: 300 * time.Millisecond, ReadBack: 5 * time.Second}
}

// Acquire takes the lock. It fails at once, naming the holder, when
// another rollout holds an unexpired lock, unless force is set or the
// holder is a dead process on this host, or the same change detached
// (pid 0) waiting for its window.
func (l *Lock) Acquire(ctx context.Context, force bool) error {
	g, err := l.Provider.Group(ctx, l.Group)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if v := g.Tags[LockTag]; v != "" {
		if h, ok := ParseLock(v); ok && h.Owner() != l.Me.Owner() && !force && !l.stale(h) {
			return fmt.Errorf("%w: %s (use --force to take it over, or wait until it expires)", ErrLocked, h)
		}
	}
	l.replaced = g.Tags[LockTag]
	if err := l.write(ctx); err != nil {
		return err
	}
	// Tags are eventually consistent: a read just after the write may
	// still show the value it replaced (or none). Only another writer's
	// value means someone else won; the old one is read again until the
	// write shows or ReadBack runs out.
	deadline := l.Now().Add(l.ReadBack)
	for {
		if l.Settle > 0 && l.Sleep != nil {
			if err := l.Sleep(ctx, l.Settle); err != nil {
				return err
			}
		}
		g, err = l.Provider.Group(ctx, l.Group)
		if err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		v := g.Tags[LockTag]
		if h, ok := ParseLock(v); ok && h.Owner() == l.Me.Owner() {
			return nil
		}
		if (v != "" && v != l.replaced) || !l.Now().Before(deadline) || l.Sleep == nil {
			return fmt.Errorf("%w: %s took it at the same moment", ErrLocked, v)
		}
	}
}

// stale reports whether a holder's lock may be taken over without force:
// it expired, or its process on this very host is gone.
func (l *Lock) stale(h LockInfo) bool {
	if l.Now().After(h.Expires) {
		return true
	}
	if h.PID == 0 && h.Change == l.Me.Change {
		return true
	}
	if h.Host == l.Me.Host && h.PID > 0 && h.PID != l.Me.PID && !processAlive(h.PID) {
		return true
	}
	return false
}

// processAlive reports whether a process of this host is running.
func processAlive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// Renew pushes the expiry forward; the engine calls it well within TTL.
func (l *Lock) Renew(ctx context.Context) error { return l.write(ctx) }

func (l *Lock) write(ctx context.Context) error {
	l.Me.Expires = l.Now().Add(l.TTL).Truncate(time.Second)
	if err := l.Provider.TagGroup(ctx, l.Group, LockTag, l.Me.String()); err != nil {
		return fmt.Errorf("lock: tag group %s: %w", l.Group, err)
	}
	return nil
}

// Detach leaves the lock held until until by this change with no process
// (pid 0): no other rollout can start, and resume of this change takes it.
func (l *Lock) Detach(ctx context.Context, until time.Time) error {
	me := l.Me
	me.PID = 0
	me.Expires = until.Add(l.TTL).Truncate(time.Second)
	if err := l.Provider.TagGroup(ctx, l.Group, LockTag, me.String()); err != nil {
		return fmt.Errorf("lock: detach: %w", err)
	}
	return nil
}

// Release removes the lock if this engine still holds it.
func (l *Lock) Release(ctx context.Context) error {
	g, err := l.Provider.Group(ctx, l.Group)
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	// Another holder's value means the lock was taken over: leave it.
	// The value this engine replaced when it took the lock may still be
	// read for a while after (eventual consistency): that one is ours to
	// remove.
	if v := g.Tags[LockTag]; v != l.replaced || l.replaced == "" {
		if h, ok := ParseLock(v); ok && h.Owner() != l.Me.Owner() {
			return nil
		}
	}
	if err := l.Provider.TagGroup(ctx, l.Group, LockTag, ""); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	return nil
}
