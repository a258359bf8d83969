package rollout

import (
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"time"
)

// Backend keeps what a change leaves behind: its state, the command
// another process left for its engine, its event log and its report.
// Store (a local directory, the default) and ObjectStore (an S3 prefix)
// are the two; every command reads and writes a change through one.
type Backend interface {
	// Load reads the state of change, or ErrNoRollout.
	Load(change string) (*State, error)
	// Update reads the state of change (nil when new), lets fn change it
	// and writes it back, atomically: a concurrent writer makes Update
	// read again and call fn again on what it wrote.
	Update(change string, fn func(*State) (*State, error)) (*State, error)
	// SetControl and TakeControl pass a pause, run, abort or rollback
	// from a command to the change's engine.
	SetControl(change, control string) (*State, error)
	TakeControl(change string) (string, error)
	// List returns every change the backend holds.
	List() ([]*State, error)
	// OpenEventLog continues change's event log, copying it to extra.
	OpenEventLog(change string, extra io.Writer) (*EventLog, error)
	// ReadEvents returns change's event log, one JSON object a line.
	ReadEvents(change string) ([]byte, error)
	// WriteReport stores change's report and says where it is.
	WriteReport(change string, report []byte) (string, error)
	// Location names the backend for messages: a directory or s3://….
	Location() string

	// put writes the engine's state over the version the engine last
	// read or wrote; ObjectStore refuses it with ErrStateChanged when
	// someone else wrote since.
	put(change string, data []byte) error
}

var (
	_ Backend = (*Store)(nil)
	_ Backend = (*ObjectStore)(nil)
)

// ErrStateChanged is returned for a write based on a state that someone
// else has rewritten since it was read: the write is refused, never
// applied over theirs. For an engine it means another engine took the
// change over; it stops without another effect.
var ErrStateChanged = errors.New("the change's state was rewritten by someone else since this engine read it")

// ErrStateUnavailable wraps a failure to reach the state backend (a
// network error, a 5xx): nothing was recorded, and the engine holds its
// next effect until a write goes through.
var ErrStateUnavailable = errors.New("state backend unreachable")

// ErrHeld is wrapped by the refusal to take over a change whose engine's
// lease has not expired.
var ErrHeld = errors.New("change is held by another engine")

// Holder is the engine that holds a change, as its state records it:
// State.Owner ("<change>@<host>:<pid>") and State.Lease. A holder with
// pid 0 is a detached change that whoever comes first may resume.
func (s *State) Holder() (LockInfo, bool) {
	if s.Owner == "" {
		return LockInfo{}, false
	}
	return ParseLock(s.Owner + " until " + s.Lease.UTC().Format(time.RFC3339))
}

// heldAgainst reports whether s is held by an engine other than me that
// may still be running: its lease has not expired at now, it is not
// detached, and it is not a process on me's host that is gone (alive
// answers that). An engine drops its lease when it stops (detached,
// failed with a manual rollback, interrupted), so the next may resume
// at once.
func (s *State) heldAgainst(me LockInfo, now time.Time, alive func(pid int) bool) (LockInfo, bool) {
	h, ok := s.Holder()
	if !ok || s.Lease.IsZero() || h.Owner() == me.Owner() || h.PID == 0 || !now.Before(s.Lease) {
		return h, false
	}
	if h.Host == me.Host && alive != nil && !alive(h.PID) {
		return h, false
	}
	return h, true
}

// StateURL is a parsed `state:` value: a local directory, or an S3
// bucket and key prefix.
type StateURL struct {
	Bucket string // empty for a local directory
	Prefix string // without leading or trailing slash; may be empty
	Dir    string // the local directory when Bucket is empty
}

// S3 reports whether u names an S3 prefix.
func (u StateURL) S3() bool { return u.Bucket != "" }

func (u StateURL) String() string {
	if !u.S3() {
		return u.Dir
	}
	if u.Prefix == "" {
		return "s3://" + u.Bucket
	}
	return "s3://" + u.Bucket + "/" + u.Prefix
}

// ParseStateURL parses "s3://BUCKET/PREFIX" (checking the bucket against
// S3's naming rules for general purpose buckets) or a local directory.
func ParseStateURL(s string) (StateURL, error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		if strings.Contains(s, "://") {
			return StateURL{}, fmt.Errorf("%q: give s3://BUCKET/PREFIX or a local directory", s)
		}
		if s == "" {
			return StateURL{}, errors.New("empty state location")
		}
		return StateURL{Dir: s}, nil
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if err := checkBucketName(bucket); err != nil {
		return StateURL{}, fmt.Errorf("%q: %w", s, err)
	}
	prefix = strings.Trim(prefix, "/")
	if err := checkPrefix(prefix); err != nil {
		return StateURL{}, fmt.Errorf("%q: %w", s, err)
	}
	return StateURL{Bucket: bucket, Prefix: prefix}, nil
}

var bucketChars = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`)

// checkBucketName applies the naming rules of general purpose buckets:
// 3 to 63 lowercase letters, digits, dots and hyphens, beginning and
// ending with a letter or digit, no two adjacent dots, not an IP
// address, and none of the reserved prefixes and suffixes.
func checkBucketName(b string) error {
	switch {
	case b == "":
		return errors.New("no bucket; give s3://BUCKET/PREFIX")
	case len(b) < 3 || len(b) > 63:
		return fmt.Errorf("bucket %q: a bucket name has 3 to 63 characters", b)
	case !bucketChars.MatchString(b):
		return fmt.Errorf("bucket %q: use lowercase letters, digits, '.' and '-', beginning and ending with a letter or digit", b)
	case strings.Contains(b, ".."):
		return fmt.Errorf("bucket %q: two adjacent periods", b)
	case net.ParseIP(b) != nil:
		return fmt.Errorf("bucket %q: a bucket name is not an IP address", b)
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(b, p) {
			return fmt.Errorf("bucket %q: the prefix %q is reserved", b, p)
		}
	}
	for _, sfx := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(b, sfx) {
			return fmt.Errorf("bucket %q: the suffix %q is reserved", b, sfx)
		}
	}
	return nil
}

var prefixSegment = regexp.MustCompile(`^[A-Za-z0-9!_.*'()-]+$`)

// checkPrefix accepts a key prefix of path segments made of the
// characters S3 documents as safe in keys, with no empty, "." or ".."
// segment (which some clients and consoles rewrite).
func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > 512 {
		return errors.New("prefix longer than 512 characters")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("prefix %q: an empty, '.' or '..' path segment", p)
		}
		if !prefixSegment.MatchString(seg) {
			return fmt.Errorf("prefix %q: use letters, digits and !_.*'()- in path segments", p)
		}
	}
	return nil
}
