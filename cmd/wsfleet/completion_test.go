package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"wsfleet/localcloud"
	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
)

// asMainEnv makes the test binary run as wsfleet itself, so that the shell
// tests call `wsfleet __complete` without building the command.
const asMainEnv = "WSFLEET_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// wsfleetOnPath puts a `wsfleet` that is this test binary run as main
// first on PATH, and returns its directory.
func wsfleetOnPath(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\n%s=1 exec '%s' \"$@\"\n", asMainEnv, exe)
	if err := os.WriteFile(filepath.Join(dir, "wsfleet"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir
}

// needTool fails (not skips) a test whose tool is missing: `make test`
// installs it with scripts/test-deps.sh.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run scripts/test-deps.sh (it installs Debian's %s package)", name, name)
	}
	return path
}

// hermeticAWS keeps the AWS SDK of a child process off the network beyond
// the endpoint it is given: static credentials, no instance metadata, no
// shared configuration.
func hermeticAWS(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCOMPLETION")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
}

// stateWithChanges makes a state directory holding the changes, through
// the rollout package's own store.
func stateWithChanges(t *testing.T, ids ...string) string {
	t.Helper()
	dir := t.TempDir()
	store := &rollout.Store{Dir: dir, NoSync: true}
	for _, id := range ids {
		st := &rollout.State{Change: id, Group: "gitter-ws", Status: rollout.StatusWaiting, Started: time.Now()}
		if err := store.Save(st); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// hangingEndpoint is an address that accepts connections and never
// answers, as an S3 endpoint behind a black hole would.
func hangingEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// TestBashCompletion drives bash's own completion: it sources the script
// `wsfleet completion bash` prints, finds the function `complete -p`
// registered for wsfleet, sets COMP_LINE, COMP_POINT, COMP_WORDS and
// COMP_CWORD as bash does for a TAB at the end of the line, calls the
// function and reads COMPREPLY.
func TestBashCompletion(t *testing.T) {
	bash := needTool(t, "bash")
	wsfleetOnPath(t)
	hermeticAWS(t)
	stateHome := t.TempDir()
	t.Setenv("XDG_STATE_HOME", stateHome)
	// The default state directory ($XDG_STATE_HOME/wsfleet) holds two
	// changes, another directory a third; the working directory has a
	// plan file naming a fourth, and a file to complete.
	defaultState := filepath.Join(stateHome, "wsfleet")
	if err := os.Rename(stateWithChanges(t, "gitter-ws-new-ami", "gitter-ws-kernel-6"), defaultState); err != nil {
		t.Fatal(err)
	}
	other := stateWithChanges(t, "other-change")
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "next.yaml"), []byte("change: planned-change\ngroup: gitter-ws\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(work, "plans"), 0o755); err != nil {
		t.Fatal(err)
	}
	hang := hangingEndpoint(t)
	// Two more changes in S3: the local cloud's, written through the
	// rollout package's object store.
	cloud, err := localcloud.Start(context.Background(), localcloud.Config{Listen: "127.0.0.1:0", S3Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	s3c := cloud.Clients("AKIDCOMPLETION").S3
	if _, err := s3c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("team-state")}); err != nil {
		t.Fatal(err)
	}
	remote := rollout.NewObjectStore(&awsprov.Objects{Client: s3c, Bucket: "team-state"}, rollout.StateURL{Bucket: "team-state", Prefix: "wsfleet"})
	for _, id := range []string{"s3-change-1", "s3-change-2"} {
		if _, err := remote.Update(id, func(*rollout.State) (*rollout.State, error) {
			return &rollout.State{Change: id, Group: "gitter-ws", Status: rollout.StatusWaiting}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	const driver = `source <(wsfleet completion bash) || exit 3
spec=$(complete -p wsfleet) || exit 4
fn=${spec#*-F }; fn=${fn%% *}
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
read -r -a COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMPREPLY=()
"$fn" wsfleet "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
`
	tests := []struct {
		name, line string
		want       []string
		maxTime    time.Duration
	}{
		{"commands", "wsfleet st", []string{"state", "status"}, 0},
		{"all commands", "wsfleet ", topLevel(), 0},
		{"change ids from the default state and the plan files", "wsfleet status -c ", []string{"gitter-ws-kernel-6", "gitter-ws-new-ami", "planned-change"}, 0},
		{"change id prefix", "wsfleet resume -c gitter-ws-n", []string{"gitter-ws-new-ami"}, 0},
		{"change ids of --state-dir", "wsfleet pause --state-dir " + other + " -c ", []string{"other-change", "planned-change"}, 0},
		{"change ids in S3", "wsfleet resume --state s3://team-state/wsfleet --endpoint " + cloud.Endpoint() + " -c ", []string{"planned-change", "s3-change-1", "s3-change-2"}, 0},
		{"flags", "wsfleet status --st", []string{"--state", "--state-dir"}, 0},
		{"engine flags", "wsfleet resume --ti", []string{"--time-scale"}, 0},
		{"subcommand", "wsfleet state ", []string{"push"}, 0},
		{"subcommand's flags", "wsfleet state push --t", []string{"--to"}, 0},
		{"shells", "wsfleet completion ", []string{"bash", "fish", "zsh"}, 0},
		{"file names", "wsfleet plan -f ne", []string{"next.yaml"}, 0},
		{"directory names", "wsfleet changes --state-dir pl", []string{"plans"}, 0},
		{"unreachable state: the plan files' ids, in bounded time", "wsfleet status --state s3://team-state/wsfleet --endpoint " + hang + " -c ", []string{"planned-change"}, 8 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bash, "--norc", "--noprofile", "-c", driver, "bash", tc.line)
			cmd.Dir = work
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			out, err := cmd.Output()
			took := time.Since(start)
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, stderr.String())
			}
			if stderr.Len() > 0 {
				t.Errorf("completion wrote to stderr: %s", stderr.String())
			}
			got := strings.Fields(string(out))
			sort.Strings(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("%q<TAB> offers %q, want %q", tc.line, got, tc.want)
			}
			if tc.maxTime > 0 && took > tc.maxTime {
				t.Errorf("completion took %s, want at most %s", took, tc.maxTime)
			}
		})
	}
}

// topLevel is what wsfleet <TAB> offers: the commands and help.
func topLevel() []string {
	names := append(sortedCommands(), "help")
	sort.Strings(names)
	return names
}

func sortedCommands() []string {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TestCompleteUnreachableState: `wsfleet __complete` with a state in S3
// that never answers gives up after its timeout, prints the plan files'
// ids and nothing on stderr, and exits 0.
func TestCompleteUnreachableState(t *testing.T) {
	hermeticAWS(t)
	wsfleetOnPath(t)
	hang := hangingEndpoint(t)
	for _, tc := range []struct{ name, endpoint string }{
		{"accepts and never answers", hang},
		{"refuses", "http://127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("wsfleet", "__complete", "status", "--state", "s3://team-state/wsfleet", "--endpoint", tc.endpoint, "-c", "")
			cmd.Dir = t.TempDir()
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				t.Fatalf("__complete: %v", err)
			}
			if took := time.Since(start); took > 8*time.Second {
				t.Errorf("took %s", took)
			}
			if stderr.Len() > 0 || stdout.String() != directiveNone+"\n" {
				t.Errorf("stdout %q stderr %q, want only the directive", stdout.String(), stderr.String())
			}
		})
	}
}

// TestCompleter checks the Go side with the state and the files injected:
// which list each position offers, and that a state that hangs or fails
// leaves the plan files' ids.
func TestCompleter(t *testing.T) {
	plans := map[string]string{
		"a.yaml":      "change: from-a\nstate: s3://bucket/prefix\naws: {region: eu-west-1, endpoint: http://127.0.0.1:4566}\n",
		"b.yml":       "change: from-b\n",
		"broken.yaml": "change: [not, an, id\n",
		"weird.yaml":  "change: \"has space\"\n",
	}
	readFile := func(name string) ([]byte, error) {
		if s, ok := plans[name]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
	var asked []stateLocation
	stateIDs := func(ids ...string) func(context.Context, stateLocation) ([]string, error) {
		return func(ctx context.Context, loc stateLocation) ([]string, error) {
			asked = append(asked, loc)
			return ids, nil
		}
	}
	hangs := func(ctx context.Context, loc stateLocation) ([]string, error) {
		<-ctx.Done()
		time.Sleep(time.Second) // a client that does not stop at once
		return []string{"too-late"}, nil
	}
	fails := func(ctx context.Context, loc stateLocation) ([]string, error) {
		return []string{"partial"}, errors.New("403 Forbidden")
	}
	tests := []struct {
		name      string
		words     []string
		changes   func(context.Context, stateLocation) ([]string, error)
		want      []string
		directive string
		wantLoc   *stateLocation
	}{
		{"nothing typed", nil, nil, topLevel(), directiveNone, nil},
		{"top-level flags", []string{"--v"}, nil, []string{"--version"}, directiveNone, nil},
		{"unknown command", []string{"nope", ""}, nil, nil, directiveNone, nil},
		{"-c: state and plan files", []string{"status", "-c", ""}, stateIDs("x-1", "from-b"), []string{"from-a", "from-b", "x-1"}, directiveNone,
			&stateLocation{}},
		{"--c is -c too", []string{"status", "--c", "x"}, stateIDs("x-1", "y-1"), []string{"x-1"}, directiveNone, &stateLocation{}},
		{"the typed --state, --endpoint, --region", []string{"abort", "--state", "s3://b/p", "--endpoint=http://e", "--region", "r", "-c", ""}, stateIDs("s-1"),
			[]string{"from-a", "from-b", "s-1"}, directiveNone, &stateLocation{state: "s3://b/p", endpoint: "http://e", region: "r"}},
		{"the typed --state-dir", []string{"resume", "--state-dir", "/srv/wsfleet", "-c", "x"}, stateIDs("x-1", "y-1"), []string{"x-1"}, directiveNone,
			&stateLocation{stateDir: "/srv/wsfleet"}},
		{"a plan's state: key is not where status looks", []string{"status", "-c", ""}, stateIDs(), []string{"from-a", "from-b"}, directiveNone, &stateLocation{}},
		{"state that hangs", []string{"status", "-c", ""}, hangs, []string{"from-a", "from-b"}, directiveNone, nil},
		{"state that fails", []string{"status", "-c", ""}, fails, []string{"from-a", "from-b"}, directiveNone, nil},
		{"a bool flag takes no value: flags follow", []string{"rollout", "--detach", "--ti"}, nil, []string{"--time-scale"}, directiveNone, nil},
		{"a number's value: nothing", []string{"rollout", "--time-scale", "-"}, nil, nil, directiveNone, nil},
		{"a repeatable flag's value: files", []string{"cloud", "--image", ""}, nil, nil, directiveFiles, nil},
		{"a value flag's value", []string{"rollout", "-f", ""}, nil, nil, directiveFiles, nil},
		{"a directory flag's value", []string{"demo", "--out", ""}, nil, nil, directiveDirs, nil},
		{"no arguments after flags", []string{"status", "word"}, nil, nil, directiveNone, nil},
		{"unknown subcommand", []string{"state", "pull", ""}, nil, nil, directiveNone, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			asked = nil
			changes := tc.changes
			if changes == nil {
				changes = stateIDs()
			}
			c := completer{changes: changes, planFiles: func() []string { return []string{"a.yaml", "b.yml", "broken.yaml", "weird.yaml"} },
				readFile: readFile, timeout: 200 * time.Millisecond}
			start := time.Now()
			cands, directive := c.complete(context.Background(), tc.words)
			if took := time.Since(start); took > 900*time.Millisecond {
				t.Errorf("took %s: the timeout does not hold", took)
			}
			var got []string
			for _, cand := range cands {
				v, _, _ := strings.Cut(cand, "\t")
				got = append(got, v)
			}
			sort.Strings(got)
			if !slices.Equal(got, tc.want) || directive != tc.directive {
				t.Errorf("%q: got %q %s, want %q %s", tc.words, got, directive, tc.want, tc.directive)
			}
			if tc.wantLoc != nil {
				want := *tc.wantLoc
				if len(asked) != 1 || asked[0] != want {
					t.Errorf("state asked at %+v, want %+v", asked, want)
				}
			}
		})
	}
}

// TestCompletionFlagsAreTheCommandsOwn: every command's flag set can be
// read without running it, and completion offers exactly its flags; a flag
// added to a command is offered without touching completion.
func TestCompletionFlagsAreTheCommandsOwn(t *testing.T) {
	for _, name := range sortedCommands() {
		t.Run(name, func(t *testing.T) {
			fs, err := commandFlags(name)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			fs.VisitAll(func(f *flag.Flag) { want = append(want, flagWord(f.Name)) })
			words := []string{name}
			if subs := subcommands[name]; len(subs) > 0 {
				words = append(words, subs[0])
			}
			cands, _ := completer{changes: func(context.Context, stateLocation) ([]string, error) { return nil, nil }}.complete(context.Background(), append(words, "-"))
			var got []string
			for _, c := range cands {
				v, _, _ := strings.Cut(c, "\t")
				got = append(got, v)
			}
			sort.Strings(want)
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("offers %q, want the command's flags %q", got, want)
			}
		})
	}
	// The flags parsed are the flags offered: -h lists the same set.
	fs, err := commandFlags("rollout")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"f", "detach", "state", "time-scale", "v"} {
		if fs.Lookup(f) == nil {
			t.Errorf("rollout's flags lack %s", f)
		}
	}
}

// TestEveryCommandHelpHasAnExample: `wsfleet CMD -h` exits 0 and shows a
// usage line, the flags and at least one example that runs the command.
func TestEveryCommandHelpHasAnExample(t *testing.T) {
	cases := [][]string{{"state", "push", "-h"}, {"bench", "takeover", "-h"}, {"bench", "soak", "-h"}}
	for _, name := range sortedCommands() {
		cases = append(cases, []string{name, "-h"})
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			help := stdout.String() + stderr.String()
			name := strings.Join(args[:len(args)-1], " ")
			if !strings.HasPrefix(help, "usage: wsfleet "+name+" ") {
				t.Errorf("no usage line:\n%s", help)
			}
			if sub, ok := subSummaries[name]; ok && !strings.Contains(help, "\n"+sub+"\n") {
				t.Errorf("-h of %s does not say what it does (%q):\n%s", name, sub, help)
			}
			_, examples, ok := strings.Cut(help, "\nexamples:\n")
			if !ok || !strings.Contains(examples, "wsfleet "+name) {
				t.Errorf("no example of wsfleet %s:\n%s", name, help)
			}
			if _, sub := subSummaries[name]; sub {
				return // commandFlags knows the parent's flags only
			}
			if fs, err := commandFlags(args[0]); err == nil {
				fs.VisitAll(func(f *flag.Flag) {
					if !strings.Contains(help, "-"+f.Name+" ") && !strings.Contains(help, "-"+f.Name+"\n") && !strings.Contains(help, "-"+f.Name+"\t") {
						t.Errorf("-h does not show -%s", f.Name)
					}
				})
			}
		})
	}
}

// TestCompletionScripts: each shell's script is what `completion SHELL`
// prints, and zsh and fish parse theirs (bash's runs in
// TestBashCompletion). fish's own completion engine (complete -C) is
// asked for the commands and a change id.
func TestCompletionScripts(t *testing.T) {
	wsfleetOnPath(t)
	stateHome := t.TempDir()
	t.Setenv("XDG_STATE_HOME", stateHome)
	if err := os.Rename(stateWithChanges(t, "gitter-ws-new-ami", "gitter-ws-kernel-6"), filepath.Join(stateHome, "wsfleet")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for shell := range completionScripts {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"completion", shell}, &stdout, &stderr); code != 0 || stdout.String() != completionScripts[shell] {
			t.Fatalf("completion %s: exit %d, %d bytes: %s", shell, code, stdout.Len(), stderr.String())
		}
		if err := os.WriteFile(filepath.Join(dir, shell), stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"completion", "tcsh"}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "bash, zsh or fish") {
		t.Errorf("completion tcsh: exit %d, %s", code, stderr.String())
	}
	tests := []struct {
		name string
		argv []string
		want []string // lines the output must hold
	}{
		{"zsh parses", []string{"zsh", "-n", filepath.Join(dir, "zsh")}, nil},
		{"zsh registers _wsfleet", []string{"zsh", "-f", "-c", "autoload -Uz compinit && compinit -u -D && source " + filepath.Join(dir, "zsh") + " && print -r -- ${_comps[wsfleet]}"}, []string{"_wsfleet"}},
		{"zsh completes st", []string{"zsh", "-f", "-c", zshDriver(filepath.Join(dir, "zsh"), "wsfleet", "st")}, []string{"state", "status"}},
		{"zsh completes a change id", []string{"zsh", "-f", "-c", zshDriver(filepath.Join(dir, "zsh"), "wsfleet", "status", "-c", "")}, []string{"gitter-ws-kernel-6", "gitter-ws-new-ami"}},
		{"zsh leaves -f to _files", []string{"zsh", "-f", "-c", zshDriver(filepath.Join(dir, "zsh"), "wsfleet", "plan", "-f", "")}, []string{"_files"}},
		{"fish parses", []string{"fish", "--no-config", "-n", filepath.Join(dir, "fish")}, nil},
		{"fish completes st", []string{"fish", "--no-config", "-c", "source " + filepath.Join(dir, "fish") + "; complete -C'wsfleet st'"}, []string{"state", "status"}},
		{"fish completes a change id", []string{"fish", "--no-config", "-c", "source " + filepath.Join(dir, "fish") + "; complete -C'wsfleet status -c '"}, []string{"gitter-ws-kernel-6", "gitter-ws-new-ami"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			needTool(t, tc.argv[0])
			cmd := exec.Command(tc.argv[0], tc.argv[1:]...)
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if v, _, _ := strings.Cut(line, "\t"); v != "" {
					got = append(got, v)
				}
			}
			sort.Strings(got)
			if tc.want == nil && len(got) > 0 {
				t.Errorf("output %q", out)
			}
			if tc.want != nil && !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// zshDriver is a zsh script that calls the completion function as zsh's
// completion system would, with words and CURRENT set for a TAB after the
// last word, and with the system's _describe and _files replaced by stubs
// that print the values offered (or "_files").
func zshDriver(script string, words ...string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	return fmt.Sprintf(`compdef() { : }
_describe() { local x; for x in "${(@P)${@[-1]}}"; do print -r -- "${x%%%%:*}"; done }
_files() { print -r -- _files }
source %s || exit 3
words=(%s)
CURRENT=%d
_wsfleet`, script, strings.Join(quoted, " "), len(words))
}

// TestVersion: `wsfleet --version` is `wsfleet version`, and both report
// the module version, the commit and whether the tree was dirty from the
// build info.
func TestVersion(t *testing.T) {
	info := func(version string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "wsfleet", Version: version}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	const rev = "b8654b8b26065f3dfead99b6c2f27383e0a1d729"
	tests := []struct {
		name   string
		ldflag string
		read   func() (*debug.BuildInfo, bool)
		want   string
	}{
		{"clean tree", "dev", info("v0.0.0-20261206160000-b8654b8b2606", "vcs.revision", rev, "vcs.time", "2026-12-06T16:00:00Z", "vcs.modified", "false", "GOOS", "linux", "GOARCH", "amd64"),
			"wsfleet v0.0.0-20261206160000-b8654b8b2606\ncommit: " + rev + "\ncommit time: 2026-12-06T16:00:00Z\ngo: go1.26.8 linux/amd64\n"},
		{"dirty tree", "dev", info("v0.0.0-20261206160000-b8654b8b2606+dirty", "vcs.revision", rev, "vcs.modified", "true"),
			"wsfleet v0.0.0-20261206160000-b8654b8b2606+dirty\ncommit: " + rev + ", dirty (built with uncommitted changes)\ngo: go1.26.8 \n"},
		{"-X main.version wins", "v1.4.0", info("v0.0.0-20261206160000-b8654b8b2606", "vcs.revision", rev),
			"wsfleet v1.4.0\ncommit: " + rev + "\ngo: go1.26.8 \n"},
		{"no VCS stamp", "dev", info("(devel)"),
			"wsfleet dev\ncommit: unknown (built outside a git checkout, or with -buildvcs=false)\ngo: go1.26.8 \n"},
		{"no build info", "dev", func() (*debug.BuildInfo, bool) { return nil, false },
			"wsfleet dev\ncommit: unknown (built outside a git checkout, or with -buildvcs=false)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := version
			version = tc.ldflag
			defer func() { version = old }()
			var buf bytes.Buffer
			readBuild(tc.read).write(&buf)
			if buf.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", buf.String(), tc.want)
			}
		})
	}
	var a, b, errOut bytes.Buffer
	if code := run([]string{"version"}, &a, &errOut); code != 0 {
		t.Fatalf("version: exit %d %s", code, errOut.String())
	}
	if code := run([]string{"--version"}, &b, &errOut); code != 0 {
		t.Fatalf("--version: exit %d %s", code, errOut.String())
	}
	if a.String() != b.String() || !strings.HasPrefix(a.String(), "wsfleet ") {
		t.Errorf("version %q, --version %q", a.String(), b.String())
	}
}
