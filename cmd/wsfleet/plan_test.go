package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlanCommandOffline(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"plan", "--offline", "-f", "../../examples/gitter-ws-new-ami.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "valid (3 phases, 3 checks)") {
		t.Errorf("stdout %q", out.String())
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("change: c\ngroup: g\nimage: i\nphases:\n  - {name: a, replace: rest, bake: soon}\n"), 0o644)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"plan", "--offline", "-f", bad}, &out, &errOut); code != 2 {
		t.Fatalf("bad plan: exit %d", code)
	}
	if want := bad + `: line 5: phases[0].bake: "soon" is not a duration like 30s, 2m or 1h30m`; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q\nwant %q", errOut.String(), want)
	}
}

func TestRolloutCommandUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"rollout"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "-f FILE is required") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
	if code := run([]string{"resume"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "-c CHANGE is required") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"status", "--state-dir", t.TempDir()}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "no rollouts") {
		t.Errorf("status on an empty state dir: exit %d: %s %s", code, out.String(), errOut.String())
	}
}
