package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Status is where a rollout stands.
type Status string

// The statuses. Running and Paused have a live engine (or had one that
// crashed); the others are final except Waiting (detached before a window)
// and Failed with manual rollback.
const (
	StatusRunning        Status = "running"
	StatusPaused         Status = "paused"
	StatusWaiting        Status = "waiting"
	StatusFailed         Status = "failed"
	StatusRollingBack    Status = "rolling-back"
	StatusSucceeded      Status = "succeeded"
	StatusRolledBack     Status = "rolled-back"
	StatusRollbackFailed Status = "rollback-failed"
	StatusAborted        Status = "aborted"
)

// Final reports whether nothing more will happen without a new command.
func (s Status) Final() bool {
	switch s {
	case StatusSucceeded, StatusRolledBack, StatusRollbackFailed, StatusAborted:
		return true
	}
	return false
}

// State is everything a rollout has decided and done. It is rewritten as a
// whole in one transaction after each decision and around each effect.
type State struct {
	Change    string    `json:"change"`
	Group     string    `json:"group"`
	PlanYAML  []byte    `json:"plan_yaml"`
	TimeScale float64   `json:"time_scale"`
	Status    Status    `json:"status"`
	Rollback  bool      `json:"rollback,omitempty"` // running the rollback steps
	Started   time.Time `json:"started"`
	Ended     time.Time `json:"ended,omitzero"`
	Owner     string    `json:"owner"`
	// Lease is how long Owner's claim on the change holds without being
	// renewed: until then no other engine may take the change over (see
	// Holder). A detached change's owner has pid 0: anyone may resume it.
	Lease time.Time `json:"lease,omitzero"`
	// NotBefore is when a change detached before a window may go on.
	NotBefore time.Time `json:"not_before,omitzero"`
	Failure   string    `json:"failure,omitempty"`
	Waiting   string    `json:"waiting,omitempty"` // what the current step waits for

	Steps         []Step `json:"steps"`
	Cursor        int    `json:"cursor"`
	RollbackSteps []Step `json:"rollback_steps,omitempty"`
	RCursor       int    `json:"rollback_cursor"`

	Template       *TemplateChange `json:"template,omitempty"`
	OldImage       string          `json:"old_image"`
	OldNames       []string        `json:"old_names"`
	InitialDesired int             `json:"initial_desired"`
	Protected      []string        `json:"protected,omitempty"`
	// Suspension is the group's processes the change suspended, and those
	// someone else had suspended before it (never resumed by it).
	Suspension *Suspension `json:"suspension,omitempty"`
	// StillFailing is the rollback's check that still failed once every
	// effect of the rollback was done: the change is rolled back, but the
	// fleet is not well (the fault may not be the new image).
	StillFailing string `json:"still_failing,omitempty"`
	// Aborting is set before an abort's clean-up effects, so that a
	// crash in the middle of them finishes the abort on resume.
	Aborting bool `json:"aborting,omitempty"`
	// Placement is where released clients go (placement.go); nil for a
	// change started before it.
	Placement *PlacementState `json:"placement,omitempty"`

	Journal []JournalEntry  `json:"journal"`
	Phases  []PhaseRecord   `json:"phases"`
	Checks  []CheckResult   `json:"checks,omitempty"` // latest per check
	Control string          `json:"-"`                // pause, run, abort, rollback: asked by another command, kept apart
	Calls   map[string]int  `json:"calls,omitempty"`  // API calls, summed over engine runs
	Peak    map[string]int  `json:"peak_connections,omitempty"`
	Nodes   map[string]Node `json:"nodes,omitempty"` // the last view of the fleet
}

// Node is one row of the view: an instance and its node's status.
type Node struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Image       string `json:"image"`
	Lifecycle   string `json:"lifecycle"`
	Health      string `json:"health,omitempty"`
	State       string `json:"state,omitempty"`
	Connections int    `json:"connections"`
	Protected   bool   `json:"protected,omitempty"`
}

// Suspension records the change's suspension of the group's processes.
// Ours and Already are fixed, in the journal's intent, before the suspend
// call, so a crash and resume never mistakes its own suspension for an
// operator's.
type Suspension struct {
	Ours    []string `json:"ours,omitempty"`    // suspended by this change; resumed when it ends
	Already []string `json:"already,omitempty"` // suspended by someone else before it; left alone
	Active  bool     `json:"active,omitempty"`  // the suspend call is done
	Resumed bool     `json:"resumed,omitempty"` // the resume call is done
}

// SuspendedProcesses are the processes a change suspends for its length.
var SuspendedProcesses = []string{"ReplaceUnhealthy", "AZRebalance"}

// JournalEntry records one effect: its intent before the call and its
// outcome after.
type JournalEntry struct {
	Seq    int       `json:"seq"`
	Step   string    `json:"step"` // "f3" (forward step 3) or "r1"
	Effect Effect    `json:"effect"`
	Status string    `json:"status"` // intent, done, failed
	Error  string    `json:"error,omitempty"`
	At     time.Time `json:"at"`
	Took   string    `json:"took,omitempty"`
}

// PhaseRecord is a phase's timing and outcome, for the report.
type PhaseRecord struct {
	Name     string        `json:"name"`
	Started  time.Time     `json:"started,omitzero"`
	Ended    time.Time     `json:"ended,omitzero"`
	Status   string        `json:"status"`
	Checks   []CheckResult `json:"checks,omitempty"`
	Probe    *ProbeResult  `json:"probe,omitempty"`
	Replaced []string      `json:"replaced,omitempty"`
	Waits    time.Duration `json:"waits"` // time the plan imposed (bakes, windows, warm-up, drains)
}

// CheckResult is one run of a check.
type CheckResult struct {
	Name   string    `json:"name"`
	Pass   bool      `json:"pass"`
	Detail string    `json:"detail"`
	At     time.Time `json:"at"`
	// Analysis is a canary analysis's table (canary_analysis checks).
	Analysis *CanaryAnalysis `json:"analysis,omitempty"`
}

// current returns the step list and cursor the engine is on.
func (s *State) current() ([]Step, *int) {
	if s.Rollback {
		return s.RollbackSteps, &s.RCursor
	}
	return s.Steps, &s.Cursor
}

// Store keeps rollout states in a bbolt database in a state directory,
// one record per change. It opens the database for each transaction only,
// so that status, pause and resume can read and write while an engine
// runs: bbolt allows one process at a time.
type Store struct {
	Dir string
	// Timeout bounds the wait for another process's transaction.
	Timeout time.Duration
	// NoSync skips fsync on commit; for tests only, where a crash is
	// simulated rather than real.
	NoSync bool
}

var bucketRollouts = []byte("rollouts")

// ErrNoRollout is returned for a change the store has never seen.
var ErrNoRollout = errors.New("no such rollout")

func (s *Store) open(readOnly bool) (*bolt.DB, error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	to := s.Timeout
	if to == 0 {
		to = 10 * time.Second
	}
	path := filepath.Join(s.Dir, "rollouts.db")
	if readOnly {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoRollout
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: to, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	db.NoSync = s.NoSync
	return db, nil
}

// Load reads the state of change.
func (s *Store) Load(change string) (*State, error) {
	db, err := s.open(true)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var st *State
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRollouts)
		if b == nil {
			return ErrNoRollout
		}
		v := b.Get([]byte(change))
		if v == nil {
			return ErrNoRollout
		}
		st = &State{}
		if err := json.Unmarshal(v, st); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", change, err)
	}
	if c, err := os.ReadFile(s.controlPath(change)); err == nil {
		st.Control = string(c)
	}
	return st, nil
}

// Update reads the state of change (nil when new), lets fn change it, and
// writes it back in one transaction. fn returning an error writes nothing.
func (s *Store) Update(change string, fn func(*State) (*State, error)) (*State, error) {
	db, err := s.open(false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var out *State
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRollouts)
		if err != nil {
			return err
		}
		var cur *State
		if v := b.Get([]byte(change)); v != nil {
			cur = &State{}
			if err := json.Unmarshal(v, cur); err != nil {
				return fmt.Errorf("decode: %w", err)
			}
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		data, err := json.Marshal(next)
		if err != nil {
			return err
		}
		out = next
		return b.Put([]byte(change), data)
	})
	if err != nil {
		return nil, fmt.Errorf("save %s: %w", change, err)
	}
	return out, nil
}

// Save writes st. The control field is kept apart (see SetControl), so
// that a save never loses a command written since st was read.
func (s *Store) Save(st *State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("save %s: %w", st.Change, err)
	}
	return s.put(st.Change, data)
}

func (s *Store) put(change string, data []byte) error {
	db, err := s.open(false)
	if err != nil {
		return err
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRollouts)
		if err != nil {
			return err
		}
		return b.Put([]byte(change), data)
	})
	if err != nil {
		return fmt.Errorf("save %s: %w", change, err)
	}
	return nil
}

// controlPath is where a command for a running engine waits: a small
// file beside the database, so that the engine's check on every loop is a
// stat rather than a transaction.
func (s *Store) controlPath(change string) string {
	return filepath.Join(s.Dir, change+".control")
}

// SetControl asks the engine running change to pause, run, abort or roll
// back; the engine takes it at its next step.
func (s *Store) SetControl(change, control string) (*State, error) {
	st, err := s.Load(change)
	if err != nil {
		return nil, err
	}
	tmp := s.controlPath(change) + ".tmp"
	if err := os.WriteFile(tmp, []byte(control), 0o600); err != nil {
		return nil, fmt.Errorf("control %s: %w", change, err)
	}
	if err := os.Rename(tmp, s.controlPath(change)); err != nil {
		return nil, fmt.Errorf("control %s: %w", change, err)
	}
	st.Control = control
	return st, nil
}

// TakeControl returns and clears the pending command for change.
func (s *Store) TakeControl(change string) (string, error) {
	b, err := os.ReadFile(s.controlPath(change))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("control %s: %w", change, err)
	}
	if err := os.Remove(s.controlPath(change)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("control %s: %w", change, err)
	}
	return string(b), nil
}

// List returns every rollout in the store.
func (s *Store) List() ([]*State, error) {
	db, err := s.open(true)
	if errors.Is(err, ErrNoRollout) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var out []*State
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRollouts)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			st := &State{}
			if err := json.Unmarshal(v, st); err != nil {
				return fmt.Errorf("decode %s: %w", k, err)
			}
			out = append(out, st)
			return nil
		})
	})
	return out, err
}

// Location is the state directory.
func (s *Store) Location() string { return s.Dir }

// OpenEventLog appends to the change's event log file in the directory.
func (s *Store) OpenEventLog(change string, extra io.Writer) (*EventLog, error) {
	return OpenEventLog(s.Dir, change, extra)
}

// ReadEvents returns the change's event log file.
func (s *Store) ReadEvents(change string) ([]byte, error) {
	b, err := os.ReadFile(EventLogPath(s.Dir, change))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// WriteReport writes <dir>/<change>.report.md.
func (s *Store) WriteReport(change string, report []byte) (string, error) {
	p := filepath.Join(s.Dir, change+".report.md")
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return "", fmt.Errorf("report %s: %w", change, err)
	}
	if err := os.WriteFile(p, report, 0o644); err != nil {
		return "", fmt.Errorf("report %s: %w", change, err)
	}
	return p, nil
}

// ReadReport returns the change's report, nil when there is none.
func (s *Store) ReadReport(change string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, change+".report.md"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// Delete removes the change's record and pending command, after its
// state moved elsewhere (wsfleet state push). Its event log and report
// files stay.
func (s *Store) Delete(change string) error {
	db, err := s.open(false)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketRollouts); b != nil {
			return b.Delete([]byte(change))
		}
		return nil
	}); err != nil {
		return fmt.Errorf("delete %s: %w", change, err)
	}
	if err := os.Remove(s.controlPath(change)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", change, err)
	}
	return nil
}

// String says what the change holds suspended, for status and the report:
// "ReplaceUnhealthy, AZRebalance suspended by the change (AZRebalance was
// already suspended by someone else; left so)".
func (sp *Suspension) String() string {
	if sp == nil {
		return ""
	}
	var b strings.Builder
	switch {
	case len(sp.Ours) == 0:
	case sp.Resumed:
		fmt.Fprintf(&b, "%s suspended by the change, resumed at its end", strings.Join(sp.Ours, ", "))
	case sp.Active:
		fmt.Fprintf(&b, "%s suspended by the change (resumed when it ends)", strings.Join(sp.Ours, ", "))
	default:
		fmt.Fprintf(&b, "suspending %s", strings.Join(sp.Ours, ", "))
	}
	if len(sp.Already) > 0 {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s already suspended by someone else (left so)", strings.Join(sp.Already, ", "))
	}
	return b.String()
}

// drainAsked is every instance the change asked to drain: those recorded
// as drained, and those whose drain call a crash may have interrupted (an
// intent with no outcome): their node may be draining, so none of them is
// kept as if it served.
func (s *State) drainAsked() map[string]bool {
	out := map[string]bool{}
	for _, list := range [][]Step{s.Steps, s.RollbackSteps} {
		for _, st := range list {
			for id := range st.Drains {
				out[id] = true
			}
		}
	}
	for _, j := range s.Journal {
		if j.Effect.Kind == EffDrain && j.Status != "failed" {
			out[j.Effect.ID] = true
		}
	}
	return out
}
