package rollout

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseStateURL(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    StateURL
		wantErr string
	}{
		{in: "s3://wsfleet-state/team/changes", want: StateURL{Bucket: "wsfleet-state", Prefix: "team/changes"}},
		{in: "s3://wsfleet-state/team/changes/", want: StateURL{Bucket: "wsfleet-state", Prefix: "team/changes"}},
		{in: "s3://my.state.bucket", want: StateURL{Bucket: "my.state.bucket"}},
		{in: "/var/lib/wsfleet", want: StateURL{Dir: "/var/lib/wsfleet"}},
		{in: "s3://", wantErr: "no bucket"},
		{in: "s3://ab/x", wantErr: "3 to 63"},
		{in: "s3://" + strings.Repeat("a", 64), wantErr: "3 to 63"},
		{in: "s3://Wsfleet/x", wantErr: "lowercase"},
		{in: "s3://wsfleet_state", wantErr: "lowercase"},
		{in: "s3://-wsfleet", wantErr: "beginning and ending"},
		{in: "s3://wsfleet..state", wantErr: "adjacent periods"},
		{in: "s3://192.168.5.4", wantErr: "IP address"},
		{in: "s3://xn--wsfleet", wantErr: "reserved"},
		{in: "s3://sthree-state", wantErr: "reserved"},
		{in: "s3://state-s3alias", wantErr: "reserved"},
		{in: "s3://state--ol-s3", wantErr: "reserved"},
		{in: "s3://wsfleet-state/a//b", wantErr: "empty"},
		{in: "s3://wsfleet-state/a/../b", wantErr: "'..'"},
		{in: "s3://wsfleet-state/a b", wantErr: "path segments"},
		{in: "gs://bucket/x", wantErr: "s3://BUCKET/PREFIX"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseStateURL(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			if again, err := ParseStateURL(got.String()); err != nil || again != got {
				t.Errorf("String %q does not parse back: %+v %v", got.String(), again, err)
			}
		})
	}
}

// TestObjectStoreConditionalWrites: the state is created with
// If-None-Match and rewritten with If-Match, so a write over a version
// someone else wrote since is refused and theirs kept.
func TestObjectStoreConditionalWrites(t *testing.T) {
	objs := newMemObjects()
	a, b := NewObjectStore(objs, stateURL), NewObjectStore(objs, stateURL)
	st := &State{Change: "c1", Group: "g", Status: StatusRunning}
	if _, err := a.Update("c1", func(*State) (*State, error) { return st, nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.put("c1", []byte(`{"change":"c1","status":"paused"}`)); !errors.Is(err, ErrStateChanged) {
		t.Fatalf("a blind create over an existing state: %v, want ErrStateChanged", err)
	}
	st.Waiting = "bake"
	if err := a.put("c1", mustMarshal(t, st)); err != nil {
		t.Fatalf("a's write over its own version: %v", err)
	}
	// b takes the change over by an update (read, then If-Match).
	if _, err := b.Update("c1", func(cur *State) (*State, error) { cur.Owner = "c1@b:1"; return cur, nil }); err != nil {
		t.Fatal(err)
	}
	st.Waiting = "drain"
	err := a.put("c1", mustMarshal(t, st))
	if !errors.Is(err, ErrStateChanged) || !strings.Contains(err.Error(), "412") {
		t.Fatalf("a's write after b's: %v, want ErrStateChanged naming the 412", err)
	}
	got, err := b.Load("c1")
	if err != nil || got.Owner != "c1@b:1" || got.Waiting != "bake" {
		t.Fatalf("stored %+v, %v: b's write must stand", got, err)
	}
	if all, err := a.List(); err != nil || len(all) != 1 || all[0].Change != "c1" {
		t.Fatalf("list: %v, %v", all, err)
	}
	if _, err := a.Load("nope"); !errors.Is(err, ErrNoRollout) {
		t.Errorf("load of a missing change: %v", err)
	}
}

// TestObjectStoreEvents: each flush is one new object; readers get the
// batches in order, whichever process wrote them.
func TestObjectStoreEvents(t *testing.T) {
	objs := newMemObjects()
	for i, host := range []string{"a", "b", "a"} {
		s := NewObjectStore(objs, stateURL)
		l, err := s.OpenEventLog("c1", nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Write(t0, "c1", "step", fmt.Sprintf("event %d", i), "host", host)
		l.Write(t0, "c1", "step", fmt.Sprintf("event %d'", i))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	keys, _, _ := objs.List(context.Background(), "team/changes/c1/events/", "")
	if len(keys) != 3 || !strings.HasSuffix(keys[2], "0000000003.jsonl") {
		t.Fatalf("batches %v", keys)
	}
	data, err := NewObjectStore(objs, stateURL).ReadEvents("c1")
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, ev := range decodeEvents(t, data) {
		msgs = append(msgs, ev["msg"].(string))
	}
	if got := strings.Join(msgs, ","); got != "event 0,event 0',event 1,event 1',event 2,event 2'" {
		t.Errorf("events %s", got)
	}
	// A failed flush keeps the batch for the next.
	hk := &hooked{Objects: objs}
	l, _ := NewObjectStore(hk, stateURL).OpenEventLog("c1", nil)
	l.Write(t0, "c1", "step", "while down")
	hk.down.Store(true)
	if err := l.Flush(); !errors.Is(err, ErrStateUnavailable) {
		t.Fatalf("flush while down: %v", err)
	}
	hk.down.Store(false)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if data, _ := NewObjectStore(objs, stateURL).ReadEvents("c1"); !bytes.Contains(data, []byte("while down")) {
		t.Error("the event written while down was lost")
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeEvents(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

// effectTwice returns the effects the event log records as done more
// than once in one step.
func effectTwice(t *testing.T, data []byte) []string {
	seen := map[string]int{}
	var twice []string
	for _, ev := range decodeEvents(t, data) {
		if ev["type"] != "effect" || ev["msg"] == "effect failed" {
			continue
		}
		k := fmt.Sprintf("%v %v", ev["step"], ev["effect"])
		if seen[k]++; seen[k] == 2 {
			twice = append(twice, k)
		}
	}
	return twice
}

// s3Engine is an engine of h over its bucket, named host, with its
// event log in the bucket.
func (h *harness) s3Engine(host string) *Engine {
	e := h.engine()
	e.Host, e.PID = host, 4242
	ev, err := e.Store.OpenEventLog("gitter-ws-new-ami", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	e.Events = ev
	h.t.Cleanup(func() { ev.Close() })
	return e
}

func memBucket(*testing.T) Objects { return newMemObjects() }

// TestObjectStoreScenarios runs the S3 backend's scenarios over an
// in-memory bucket; s3_e2e_test.go runs them over the local cloud's S3.
func TestObjectStoreScenarios(t *testing.T) { runS3Scenarios(t, memBucket, 0) } // crash points: TestEngineCrashAtEveryEffect/s3

// runS3Scenarios: the hand-over, the stale write and the unreachable
// bucket over buckets newBucket makes.
func runS3Scenarios(t *testing.T, newBucket func(*testing.T) Objects, crashStride int) {
	t.Run("hand-over", func(t *testing.T) { testHandOver(t, newBucket) })
	t.Run("stale-write", func(t *testing.T) { testStaleWrite(t, newBucket) })
	t.Run("unreachable", func(t *testing.T) { testUnreachable(t, newBucket) })
	t.Run("unreachable-while-waiting", func(t *testing.T) { testUnreachableWhileWaiting(t, newBucket) })
	if crashStride > 0 {
		t.Run("crash-points", func(t *testing.T) { testCrashAtEveryEffect(t, newBucket, crashStride) })
	}
}

// newS3Harness is a harness whose state is in a bucket newBucket makes.
func newS3Harness(t *testing.T, newBucket func(*testing.T) Objects) *harness {
	h := newHarness(t)
	h.objs = &hooked{Objects: newBucket(t)}
	h.cloud.floor = 8
	return h
}

// testHandOver: a change detached before its window on one machine is
// resumed from others when the window opens. Twenty times two machines
// resume it at the same instant: exactly one runs, and the other is
// refused at once, naming it; the one that ran is stopped (as by ^C) a
// few saves in, and the next round begins. The last round's winner
// finishes the change, with no effect made twice (per the cloud and the
// event log).
func testHandOver(t *testing.T, newBucket func(*testing.T) Objects) {
	h := newS3Harness(t, newBucket)
	e := h.s3Engine("laptop-a")
	e.Detach = true
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if !errors.Is(err, ErrDetached) || st.Status != StatusWaiting {
		t.Fatalf("err %v status %s", err, st.Status)
	}
	e.Events.Close()
	stored, err := NewObjectStore(h.objs, stateURL).Load("gitter-ws-new-ami")
	if err != nil || !stored.NotBefore.Equal(time.Date(2019, 8, 19, 7, 0, 0, 0, time.UTC)) {
		t.Fatalf("stored state: not_before %v, %v", stored.NotBefore, err)
	}
	if h, ok := stored.Holder(); !ok || h.PID != 0 {
		t.Fatalf("a detached change's holder %q", stored.Owner)
	}
	h.clk.mu.Lock()
	h.clk.t = time.Date(2019, 8, 19, 7, 0, 1, 0, time.UTC)
	h.clk.mu.Unlock()
	const rounds = 20
	for round := 1; ; round++ {
		// Two machines, each with its own client. Neither writes the
		// state until both have read it: the same instant, as far as
		// the bucket can tell.
		var arrived atomic.Int32
		gate := make(chan struct{})
		var engines []*Engine
		for _, host := range []string{fmt.Sprintf("laptop-%d", round), fmt.Sprintf("ci-runner-%d", round)} {
			first := true
			own := &hooked{Objects: h.objs, beforePut: func(key string) {
				if !first || !strings.HasSuffix(key, "/state.json") {
					return
				}
				first = false
				if arrived.Add(1) == 2 {
					close(gate)
				}
				select {
				case <-gate:
				case <-time.After(2 * time.Second): // the other was refused before writing
				}
			}}
			e := h.s3Engine(host)
			e.Store = NewObjectStore(own, stateURL)
			engines = append(engines, e)
		}
		ctxs := make([]context.Context, 2)
		for j, e := range engines {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctxs[j] = ctx
			if round < rounds {
				saves := 0
				e.View = func(*State) { // stopped a few saves in
					if saves++; saves == 4 {
						cancel()
					}
				}
			}
		}
		errs := make([]error, 2)
		sts := make([]*State, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j, e := range engines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				sts[j], errs[j] = e.Resume(ctxs[j], "gitter-ws-new-ami", false)
				e.Events.Close()
			}()
		}
		close(start)
		wg.Wait()
		ran, refused := 0, 1
		if errors.Is(errs[0], ErrHeld) || errors.Is(errs[0], ErrLocked) {
			ran, refused = 1, 0
		}
		if err := errs[ran]; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: the engine that ran: %v (the other: %v)", round, err, errs[refused])
		}
		if !errors.Is(errs[refused], ErrHeld) && !errors.Is(errs[refused], ErrLocked) {
			t.Fatalf("round %d: both ran (%v, %v)", round, errs[0], errs[1])
		}
		if holder := engines[ran].me("gitter-ws-new-ami").Owner(); !strings.Contains(errs[refused].Error(), holder) {
			t.Errorf("round %d: the refusal %q does not name the holder %s", round, errs[refused], holder)
		}
		if sts[ran].Status.Final() {
			if round < rounds {
				t.Fatalf("the change ended in round %d, before %d rounds", round, rounds)
			}
			if sts[ran].Status != StatusSucceeded {
				t.Fatalf("status %s: %s", sts[ran].Status, sts[ran].Failure)
			}
			break
		}
		if round >= rounds {
			t.Fatalf("round %d: status %s", round, sts[ran].Status)
		}
	}
	h.checkInvariants()
	if got := len(h.cloud.terminated); got != 9 {
		t.Errorf("%d instances terminated, want 9", got)
	}
	data, err := NewObjectStore(h.objs, stateURL).ReadEvents("gitter-ws-new-ami")
	if err != nil {
		t.Fatal(err)
	}
	if twice := effectTwice(t, data); len(twice) > 0 {
		t.Errorf("effects done twice per the event log: %v", twice)
	}
	if !bytes.Contains(data, []byte(`"detach"`)) || !bytes.Contains(data, []byte(`"end"`)) {
		t.Error("the event log lacks the first machine's detach or the last one's end")
	}
}

// testStaleWrite: an edit of the state object between the
// engine's read and its write makes the write fail with ErrStateChanged;
// the edit stands, no effect is made on the stale state, and a resume
// after the lease finishes the change with nothing lost or repeated.
func testStaleWrite(t *testing.T, newBucket func(*testing.T) Objects) {
	h := newS3Harness(t, newBucket)
	key := "team/changes/gitter-ws-new-ami/state.json"
	var n atomic.Int32
	var callsAtEdit map[string]int
	h.objs.beforePut = func(k string) {
		if k != key || n.Add(1) != 40 {
			return
		}
		var st State
		if err := json.Unmarshal(h.objs.get(t, key), &st); err != nil {
			t.Error(err)
			return
		}
		st.Waiting = "edited by hand"
		h.objs.set(t, key, mustMarshal(t, &st))
		callsAtEdit = h.cloud.APICalls()
	}
	e := h.s3Engine("laptop-a")
	_, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if !errors.Is(err, ErrStateChanged) || !strings.Contains(err.Error(), "rewritten by someone else") {
		t.Fatalf("start: %v, want ErrStateChanged", err)
	}
	h.objs.beforePut = nil
	for _, call := range []string{"TerminateInstanceInAutoScalingGroup", "SetDesiredCapacity", "CreateLaunchTemplateVersion", "SetInstanceProtection"} {
		if got, want := h.cloud.APICalls()[call], callsAtEdit[call]; got != want {
			t.Errorf("%s: %d calls after the refused write, %d before: an effect made on a stale state", call, got, want)
		}
	}
	stored, err := NewObjectStore(h.objs, stateURL).Load("gitter-ws-new-ami")
	if err != nil || stored.Waiting != "edited by hand" {
		t.Fatalf("the edit was overwritten: %q, %v", stored.Waiting, err)
	}
	// Another machine: refused while laptop-a's lease runs, then takes over.
	if _, err := h.s3Engine("laptop-b").Resume(context.Background(), "gitter-ws-new-ami", false); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "laptop-a") {
		t.Fatalf("resume within the lease: %v, want ErrHeld naming laptop-a", err)
	}
	h.clk.Sleep(context.Background(), 2*time.Minute)
	st, err := h.s3Engine("laptop-b").Resume(context.Background(), "gitter-ws-new-ami", false)
	if err != nil || st.Status != StatusSucceeded {
		t.Fatalf("resume after the lease: %v", err)
	}
	h.checkInvariants()
	if got := len(h.cloud.terminated); got != 9 {
		t.Errorf("%d terminated, want 9", got)
	}
}

// testUnreachable: while the bucket cannot be reached the
// engine makes no effect; it goes on once the state can be written, and
// the change completes with every effect recorded.
func testUnreachable(t *testing.T, newBucket func(*testing.T) Objects) {
	h := newS3Harness(t, newBucket)
	e := h.s3Engine("laptop-a")
	mutating := func() int { return mutatingCalls(h) }
	var atDown, heldSleeps int
	e.Crash = func(p string) bool {
		if !h.objs.down.Load() && heldSleeps == 0 && strings.HasPrefix(p, "after:") && (strings.Contains(p, "terminate") || strings.Contains(p, ":retire/")) {
			h.objs.down.Store(true)
			atDown = mutating()
		}
		return false
	}
	e.Sleep = func(ctx context.Context, d time.Duration) error {
		if h.objs.down.Load() {
			if got := mutating(); got != atDown {
				t.Errorf("%d mutating calls while the state could not be written", got-atDown)
			}
			if heldSleeps++; heldSleeps == 6 {
				h.objs.down.Store(false)
			}
		}
		return h.clk.Sleep(ctx, d)
	}
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if err != nil || st.Status != StatusSucceeded {
		t.Fatalf("%v %v", err, st.Status)
	}
	if heldSleeps < 6 {
		t.Fatalf("the engine never waited for the state (%d)", heldSleeps)
	}
	h.checkInvariants()
	stored, err := NewObjectStore(h.objs, stateURL).Load("gitter-ws-new-ami")
	if err != nil {
		t.Fatal(err)
	}
	done := 0
	for _, j := range stored.Journal {
		if ids := j.Effect.TerminatedIDs(); len(ids) > 0 {
			if j.Status != "done" {
				t.Errorf("journal %s: %s", j.Effect.Key, j.Status)
			}
			done += len(ids)
		}
	}
	if done != len(h.cloud.terminated) {
		t.Errorf("journal records %d terminations, the cloud saw %d", done, len(h.cloud.terminated))
	}
}

// testUnreachableWhileWaiting: the bucket goes out of reach while the
// engine polls between effects, so its next call to it is the read of a
// pending command rather than a save. The engine must hold as it does for
// a save (no effect, no exit: before, the failed read of the control
// object stopped it), and go on to the end once the bucket answers again.
func testUnreachableWhileWaiting(t *testing.T, newBucket func(*testing.T) Objects) {
	h := newS3Harness(t, newBucket)
	e := h.s3Engine("laptop-a")
	mutating := func() int { return mutatingCalls(h) }
	var atDown, downSleeps int
	e.Sleep = func(ctx context.Context, d time.Duration) error {
		switch {
		case h.objs.down.Load():
			if got := mutating(); got != atDown {
				t.Errorf("%d mutating calls while the bucket could not be reached", got-atDown)
			}
			if downSleeps++; downSleeps == 6 {
				h.objs.down.Store(false)
			}
		case downSleeps == 0 && h.cloud.APICalls()["TerminateInstanceInAutoScalingGroup"] > 0:
			h.objs.down.Store(true)
			atDown = mutating()
		}
		return h.clk.Sleep(ctx, d)
	}
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if err != nil || st.Status != StatusSucceeded {
		t.Fatalf("%v %v", err, st.Status)
	}
	if downSleeps < 6 {
		t.Fatalf("the bucket was out of reach for %d of the engine's sleeps, want 6", downSleeps)
	}
	h.checkInvariants()
}

// mutatingCalls counts the calls of h's cloud that change the group.
func mutatingCalls(h *harness) int {
	c := h.cloud.APICalls()
	return c["TerminateInstanceInAutoScalingGroup"] + c["SetDesiredCapacity"] + c["CreateLaunchTemplateVersion"] + c["SetInstanceProtection"] + c["SuspendProcesses"] + c["ResumeProcesses"]
}
