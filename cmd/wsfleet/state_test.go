package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"wsfleet/internal/simcloud"
	"wsfleet/localcloud"
	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
)

// TestStateInS3HandOver: the seed's change (its phases: a canary with the
// old instances protected, ws-01..ws-04, the rest in a later window) with
// state: s3://…, on eight simulated instances of the local cloud. It is
// started with --detach on one state directory and exits before its
// second window; from a second, empty state directory `changes` and
// `status` show it waiting and when it may go on, and `resume` finishes
// it. Nothing is lost or repeated: every old instance is terminated once
// (the cloud's scaling activities) and the event log holds every effect
// once.
func TestStateInS3HandOver(t *testing.T) {
	if testing.Short() {
		t.Skip("a rollout across a window on the local cloud")
	}
	const token = "state-test-admin-token"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var names []string
	for i := 1; i <= 8; i++ {
		names = append(names, fmt.Sprintf("ws-%02d", i))
	}
	cloud := simcloud.Start(t, ctx, simcloud.Group{Names: names, Token: token, DeregistrationDelay: 10, S3Dir: t.TempDir()})
	t.Setenv("WSFLEET_ADMIN_TOKEN", token)
	clients := cloud.Clients("AKIDTEST")
	s3c := clients.S3
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("wsfleet-state")}); err != nil {
		t.Fatal(err)
	}
	prov, err := awsprov.New(ctx, awsprov.Config{Region: "us-east-1", Endpoint: cloud.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	waitGroup(t, prov, "ami-old", 30*time.Second)

	// The seed's plan, its second window a few seconds from now.
	window := time.Now().Add(15 * time.Second).UTC().Truncate(time.Second)
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(plan, []byte(fmt.Sprintf(`change: gitter-ws-new-ami
group: gitter-ws
image: ami-new
aws: {region: us-east-1, endpoint: %s}
state: s3://wsfleet-state/team/changes
warm_up: 30s
healthy_timeout: 30s
drain: {window: 5s, max_rate: 2000, deadline: 10s}
checks:
  - {name: errors, interval: 10s, metric: {name: wsfleet_errors_total, labels: {code: "500"}, max_increase: 0}}
phases:
  - {name: canary, canary: 1, protect_old: true, bake: 2m, deadline: 15m}
  - {name: first half, replace: [ws-01, ws-02, ws-03, ws-04], deadline: 15m}
  - {name: second half, replace: rest, not_before: "%s", deadline: 15m}
rollback: {on_failure: auto}
`, cloud.Endpoint(), window.Format(time.RFC3339))), 0o644); err != nil {
		t.Fatal(err)
	}
	engine := []string{"--time-scale", "0.01", "--poll", "50ms", "--max-poll", "200ms", "--lock-ttl", "10s"}
	dirA, dirB := filepath.Join(dir, "operator-a"), filepath.Join(dir, "operator-b")
	out := wsfleet(t, 0, append([]string{"rollout", "-f", plan, "--detach", "--state-dir", dirA}, engine...)...)
	if !strings.Contains(out, "detached") || !strings.Contains(out, "--state s3://wsfleet-state/team/changes") {
		t.Fatalf("rollout --detach: %s", out)
	}
	if time.Now().After(window) {
		t.Fatalf("the first two phases outlasted the window's start (%s): raise the test's margin", window)
	}
	if _, err := os.Stat(filepath.Join(dirA, "rollouts.db")); err == nil {
		t.Error("the state went to the local directory, not to S3")
	}

	// Another operator's machine: an empty state directory.
	remote := []string{"--state", "s3://wsfleet-state/team/changes", "--endpoint", cloud.Endpoint(), "--state-dir", dirB}
	out = wsfleet(t, 0, append([]string{"changes"}, remote...)...)
	if !strings.Contains(out, "gitter-ws-new-ami") || !strings.Contains(out, "waiting") || !strings.Contains(out, window.Format(time.RFC3339)) {
		t.Errorf("changes:\n%s", out)
	}
	out = wsfleet(t, 0, append([]string{"status", "-c", "gitter-ws-new-ami"}, remote...)...)
	if !strings.Contains(out, "anyone may resume it from "+window.Format(time.RFC3339)) {
		t.Errorf("status does not say when the change may go on:\n%s", out)
	}
	time.Sleep(time.Until(window))
	out = wsfleet(t, 0, append(append([]string{"resume", "-c", "gitter-ws-new-ami"}, remote...), engine...)...)
	if !strings.Contains(out, "gitter-ws-new-ami: succeeded; report s3://wsfleet-state/team/changes/gitter-ws-new-ami/report.md") {
		t.Fatalf("resume:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dirB, "rollouts.db")); err == nil {
		t.Error("the resume wrote a local state")
	}
	waitGroup(t, prov, "ami-new", 10*time.Second)

	// Nothing repeated: the cloud terminated each of the nine old and
	// canary instances once, and the event log in S3 holds each effect once.
	store := rollout.NewObjectStore(&awsprov.Objects{Client: s3c, Bucket: "wsfleet-state"}, rollout.StateURL{Bucket: "wsfleet-state", Prefix: "team/changes"})
	st, err := store.Load("gitter-ws-new-ami")
	if err != nil || st.Status != rollout.StatusSucceeded {
		t.Fatalf("stored state: %v %v", st, err)
	}
	terminated := map[string]int{}
	for _, j := range st.Journal {
		if j.Status == "done" {
			for _, id := range j.Effect.TerminatedIDs() {
				terminated[id]++
			}
		}
	}
	acts := map[string]int{} // the cloud's own record: its scaling activities
	pager := autoscaling.NewDescribeScalingActivitiesPaginator(clients.ASG, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String("gitter-ws")})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Activities {
			// A batch's targets are detached, then terminated by EC2.
			desc := aws.ToString(a.Description)
			if id, ok := strings.CutPrefix(desc, "Terminating EC2 instance: "); ok {
				acts[id]++
			} else if id, ok := strings.CutPrefix(desc, "Detaching EC2 instance: "); ok {
				acts[id]++
			}
		}
	}
	if len(acts) != 9 || len(terminated) != 9 {
		t.Errorf("the cloud terminated %d instances, the journal records %d; want 9", len(acts), len(terminated))
	}
	for id, n := range acts {
		if n != 1 || terminated[id] != 1 {
			t.Errorf("%s terminated %d times (journal: %d)", id, n, terminated[id])
		}
	}
	events, err := store.ReadEvents("gitter-ws-new-ami")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(events), []byte("\n")) {
		if !bytes.Contains(line, []byte(`"type":"effect"`)) || bytes.Contains(line, []byte("effect failed")) {
			continue
		}
		var key string
		if i := bytes.Index(line, []byte(`"effect":"`)); i >= 0 {
			key = string(line[i:])
			key = key[:strings.IndexByte(key[10:], '"')+10]
		}
		step := ""
		if i := bytes.Index(line, []byte(`"step":"`)); i >= 0 {
			step = string(line[i+8:])
			step = step[:strings.IndexByte(step, '"')]
		}
		if seen[step+key] {
			t.Errorf("effect %s in step %s twice in the event log", key, step)
		}
		seen[step+key] = true
	}
	if !bytes.Contains(events, []byte(`"type":"detach"`)) || !bytes.Contains(events, []byte(`"type":"end"`)) {
		t.Error("the event log lacks the first machine's detach or the second's end")
	}
}

// wsfleet runs the command line in this process and checks its exit
// status.
func wsfleet(t *testing.T, want int, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(args, &out, &errOut); code != want {
		t.Fatalf("wsfleet %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out.String(), errOut.String())
	}
	return out.String() + errOut.String()
}

// waitGroup waits until the group's eight live instances are in service
// and healthy on image.
func waitGroup(t *testing.T, p *awsprov.Provider, image string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		g, err := p.Group(context.Background(), "gitter-ws")
		n := 0
		if err == nil {
			for _, in := range g.Instances {
				if in.Live() && in.Image == image && in.Lifecycle == "InService" && in.Health == "healthy" {
					n++
				}
			}
		}
		if n == 8 && len(g.Instances) >= 8 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group not 8 healthy on %s within %s: %v", image, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStatePush: a local change moves to S3 with its event log and
// report, and is gone from the directory; a change its engine still runs
// is refused, and so is a push over a change already in the prefix.
func TestStatePush(t *testing.T) {
	ctx := context.Background()
	cloud, err := localcloud.Start(ctx, localcloud.Config{Listen: "127.0.0.1:0", S3Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	s3c := cloud.Clients("AKIDTEST").S3
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("wsfleet-state")}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	local := &rollout.Store{Dir: dir}
	host, _ := os.Hostname()
	plan := []byte("change: c1\ngroup: gitter-ws\nimage: ami-new\nphases:\n  - {name: a, replace: rest}\n")
	put := func(owner string) {
		if _, err := local.Update("c1", func(*rollout.State) (*rollout.State, error) {
			return &rollout.State{Change: "c1", Group: "gitter-ws", PlanYAML: plan, Status: rollout.StatusWaiting, Owner: owner, Lease: time.Now().Add(time.Minute)}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	put(fmt.Sprintf("c1@%s:%d", host, os.Getpid())) // this process: an engine that runs
	ev, _ := local.OpenEventLog("c1", nil)
	ev.Write(time.Now(), "c1", "start", "rollout started")
	ev.Close()
	args := []string{"state", "push", "-c", "c1", "--to", "s3://wsfleet-state/team", "--state-dir", dir, "--endpoint", cloud.Endpoint()}
	if out := wsfleet(t, 1, args...); !strings.Contains(out, "is run by an engine") {
		t.Errorf("push while an engine runs it: %s", out)
	}
	put("c1@" + host + ":0") // detached
	if out := wsfleet(t, 0, args...); !strings.Contains(out, "moved to s3://wsfleet-state/team") {
		t.Errorf("push: %s", out)
	}
	if _, err := local.Load("c1"); err == nil {
		t.Error("the local copy is still there")
	}
	remote := rollout.NewObjectStore(&awsprov.Objects{Client: s3c, Bucket: "wsfleet-state"}, rollout.StateURL{Bucket: "wsfleet-state", Prefix: "team"})
	st, err := remote.Load("c1")
	if err != nil || st.Status != rollout.StatusWaiting || !st.Lease.IsZero() {
		t.Fatalf("pushed state %+v, %v", st, err)
	}
	if ev, err := remote.ReadEvents("c1"); err != nil || !bytes.Contains(ev, []byte("rollout started")) {
		t.Errorf("pushed event log %q, %v", ev, err)
	}
	out := wsfleet(t, 0, "changes", "--state", "s3://wsfleet-state/team", "--endpoint", cloud.Endpoint())
	if !strings.Contains(out, "c1") || !strings.Contains(out, "waiting") {
		t.Errorf("changes after the push: %s", out)
	}
	put("c1@" + host + ":0")
	if out := wsfleet(t, 1, args...); !strings.Contains(out, "already holds a change of that id") {
		t.Errorf("a second push: %s", out)
	}
}

// TestResumeHeldOnThisHost: a change run by another live engine on this
// host is refused by resume, naming that engine, as it is from another
// host, whatever the timing (before, a resume that read the state after
// the other engine's claim left it a no-op "run" and exited 0, one that
// read it before exited 1); a paused one is asked to go on.
func TestResumeHeldOnThisHost(t *testing.T) {
	holder := exec.Command("sleep", "60") // a live process on this host
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	host, _ := os.Hostname()
	owner := fmt.Sprintf("c1@%s:%d", host, holder.Process.Pid)
	plan := []byte("change: c1\ngroup: gitter-ws\nimage: ami-new\nphases:\n  - {name: a, replace: rest}\n")
	for _, tc := range []struct {
		status rollout.Status
		code   int
		want   string
		ctl    string
	}{
		{rollout.StatusRunning, 1, "held by the engine " + owner, ""},
		{rollout.StatusWaiting, 1, "held by the engine " + owner, ""},
		{rollout.StatusPaused, 0, "asked the engine (" + owner + ") to resume", "run"},
	} {
		t.Run(string(tc.status), func(t *testing.T) {
			dir := t.TempDir()
			local := &rollout.Store{Dir: dir}
			if _, err := local.Update("c1", func(*rollout.State) (*rollout.State, error) {
				return &rollout.State{Change: "c1", Group: "gitter-ws", PlanYAML: plan, Status: tc.status, Owner: owner, Lease: time.Now().Add(time.Minute)}, nil
			}); err != nil {
				t.Fatal(err)
			}
			if out := wsfleet(t, tc.code, "resume", "-c", "c1", "--state-dir", dir); !strings.Contains(out, tc.want) {
				t.Errorf("resume: %s, want %q", out, tc.want)
			}
			if ctl, err := local.TakeControl("c1"); err != nil || ctl != tc.ctl {
				t.Errorf("control left for the engine: %q, %v; want %q", ctl, err, tc.ctl)
			}
		})
	}
}

// TestDetachHint: the command --detach prints to go on works as printed:
// for a change in S3 it names the state and, for a non-AWS endpoint (the
// plan's or --endpoint's), the endpoint, without which a machine with only
// the change id would ask AWS; a change in a state directory names the
// directory and is not said to be resumable from any machine.
func TestDetachHint(t *testing.T) {
	at := time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC)
	plan := []byte("change: c1\ngroup: g\nimage: ami-new\naws: {region: us-east-1, endpoint: http://127.0.0.1:4566}\nphases:\n  - {name: a, replace: rest}\n")
	s3store := rollout.NewObjectStore(nil, rollout.StateURL{Bucket: "state", Prefix: "team"})
	for _, tc := range []struct {
		name     string
		store    rollout.Backend
		endpoint string
		want     string
		not      string
	}{
		{"s3 plan endpoint", s3store, "", "`wsfleet resume -c c1 --state s3://state/team --endpoint http://127.0.0.1:4566` when it opens (from any machine, ", ""},
		{"s3 flag endpoint", s3store, "http://127.0.0.1:18666", "--state s3://state/team --endpoint http://127.0.0.1:18666`", ""},
		{"local", &rollout.Store{Dir: "/var/lib/wsfleet"}, "", "`wsfleet resume -c c1 --state-dir /var/lib/wsfleet` when it opens (at 2026-12-06T16:00:00Z)", "any machine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &rollout.State{Change: "c1", PlanYAML: plan, Status: rollout.StatusWaiting, Waiting: "window opens", NotBefore: at}
			var out bytes.Buffer
			if err := roFinish(st, rollout.ErrDetached, tc.store, &roFlags{endpoint: tc.endpoint, stateDir: "/var/lib/wsfleet"}, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.want) || (tc.not != "" && strings.Contains(out.String(), tc.not)) {
				t.Errorf("%s\nwant %q, not %q", out.String(), tc.want, tc.not)
			}
		})
	}
}
