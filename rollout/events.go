package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// EventLog writes one JSON object per line for every decision and effect:
// {"time","change","type","msg", …fields}. It appends to a file in the
// state directory (so a resumed rollout continues the same log) and, with
// --json, to standard output as well. With an ObjectStore, the events
// wait in memory and Flush writes them as one batch.
type EventLog struct {
	mu  sync.Mutex
	out []io.Writer
	f   *os.File
	// flush, when set, stores a batch of pending events; pending keeps
	// them until it succeeds.
	flush   func([]byte) error
	pending bytes.Buffer
}

// OpenEventLog appends to <dir>/<change>.events.jsonl and to extra, if set.
func OpenEventLog(dir, change string, extra io.Writer) (*EventLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	f, err := os.OpenFile(EventLogPath(dir, change), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	l := &EventLog{f: f, out: []io.Writer{f}}
	if extra != nil {
		l.out = append(l.out, extra)
	}
	return l, nil
}

// NewEventLog writes events to w only.
func NewEventLog(w io.Writer) *EventLog { return &EventLog{out: []io.Writer{w}} }

// EventLogPath is where a change's event log lives.
func EventLogPath(dir, change string) string {
	return filepath.Join(dir, change+".events.jsonl")
}

// Write appends one event; kv are key/value pairs as in slog.
func (l *EventLog) Write(at time.Time, change, typ, msg string, kv ...any) {
	ev := map[string]any{"time": at.UTC().Format(time.RFC3339Nano), "change": change, "type": typ, "msg": msg}
	for i := 0; i+1 < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			continue
		}
		v := kv[i+1]
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		if e, ok := v.(error); ok {
			v = e.Error()
		}
		ev[k] = v
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.out {
		w.Write(line)
	}
	if l.flush != nil {
		l.pending.Write(line)
	}
}

// Flush stores the events written since the last flush as one batch; on
// failure they stay pending for the next. A file-backed log has nothing
// to flush.
func (l *EventLog) Flush() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.flush == nil || l.pending.Len() == 0 {
		return nil
	}
	if err := l.flush(bytes.Clone(l.pending.Bytes())); err != nil {
		return err
	}
	l.pending.Reset()
	return nil
}

// Close flushes what is pending and closes the file.
func (l *EventLog) Close() error {
	err := l.Flush()
	if l.f != nil {
		err = errors.Join(err, l.f.Close())
	}
	return err
}
