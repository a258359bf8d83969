package rollout

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestEngineRollbackOutcomes checks that a rollback's outcome says what
// happened: rolled back when every effect of the rollback happened, even
// with a check still failing afterwards (the fault may not be the new
// image); rollback-failed only when an effect of the rollback did not
// happen, naming it. Either way, the processes the change suspended are
// resumed and an operator's suspension is left alone.
func TestEngineRollbackOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name string
		// siteStaysDown keeps the site check failing once it failed:
		// the rollback does not cure it.
		siteStaysDown bool
		// failInRollback makes these calls fail once the rollback began.
		failInRollback   []string
		operator         []string // suspended by someone else before the change
		wantStatus       Status
		wantFailure      []string // substrings of the state's failure
		wantStillFailing string   // prefix of StillFailing
		wantSuspended    []string // the group's suspended processes at the end
		wantFleet        string   // image of every instance at the end; "" unchecked
	}{{
		name:       "check passes after the rollback: rolled back",
		wantStatus: StatusRolledBack, wantFailure: []string{"check site: "}, wantFleet: "ami-old",
	}, {
		name: "check still fails after the rollback: rolled back, check named", siteStaysDown: true,
		wantStatus:       StatusRolledBack,
		wantFailure:      []string{"check site: ", "; rolled back, but after the rollback check site: ", "(still failing: the fault may not be the new image)"},
		wantStillFailing: "check site: ", wantFleet: "ami-old",
	}, {
		name: "check still fails, an operator's suspension kept", siteStaysDown: true, operator: []string{"AZRebalance"},
		wantStatus: StatusRolledBack, wantStillFailing: "check site: ", wantSuspended: []string{"AZRebalance"}, wantFleet: "ami-old",
	}, {
		name: "an effect of the rollback fails: rollback-failed, naming it, processes resumed", failInRollback: []string{"SetInstanceProtection"},
		wantStatus:  StatusRollbackFailed,
		wantFailure: []string{"check site: ", "; rollback: effect unprotect (unprotect) did not happen: injected"},
	}, {
		name: "an effect fails with an operator's suspension: only the change's resumed", failInRollback: []string{"UpdateAutoScalingGroup"}, operator: []string{"ReplaceUnhealthy"},
		wantStatus:    StatusRollbackFailed,
		wantFailure:   []string{"; rollback: effect set-template-version (set-template-version) did not happen: injected"},
		wantSuspended: []string{"ReplaceUnhealthy"},
	}, {
		name: "the resume fails too: rollback-failed, both said", failInRollback: []string{"SetInstanceProtection", "ResumeProcesses"},
		wantStatus:    StatusRollbackFailed,
		wantFailure:   []string{"; rollback: effect unprotect (unprotect) did not happen: injected", "; ending the change's hold on the group: resume-processes: injected"},
		wantSuspended: []string{"AZRebalance", "ReplaceUnhealthy"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.cloud.floor = 8
			h.operatorSuspends(tc.operator...)
			e := h.engine()
			injected := false
			e.View = func(st *State) {
				bad := false
				for _, n := range st.Nodes {
					if n.Image == "ami-new" && n.State == "ready" {
						bad = true
					}
				}
				if !(tc.siteStaysDown && h.fail.Load()) {
					h.fail.Store(bad)
				}
				if st.Rollback && !injected {
					injected = true
					h.cloud.mu.Lock()
					for _, op := range tc.failInRollback {
						h.cloud.failCalls[op] = errors.New("injected")
					}
					h.cloud.mu.Unlock()
				}
			}
			st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("err = %v, want ErrFailed", err)
			}
			if st.Status != tc.wantStatus {
				t.Fatalf("status %s, want %s: %s", st.Status, tc.wantStatus, st.Failure)
			}
			for _, w := range tc.wantFailure {
				if !strings.Contains(st.Failure, w) {
					t.Errorf("failure %q\nlacks %q", st.Failure, w)
				}
			}
			if !strings.HasPrefix(st.StillFailing, tc.wantStillFailing) || (tc.wantStillFailing == "") != (st.StillFailing == "") {
				t.Errorf("still failing %q, want %q...", st.StillFailing, tc.wantStillFailing)
			}
			var suspended []string
			for _, p := range SuspendedProcesses {
				if h.cloud.suspended[p] {
					suspended = append(suspended, p)
				}
			}
			want := append([]string(nil), tc.wantSuspended...)
			if strings.Join(suspended, ",") != strings.Join(sortedLike(want), ",") {
				t.Errorf("suspended at the end %v, want %v", suspended, want)
			}
			if v := h.cloud.tags[LockTag]; v != "" {
				t.Errorf("lock left on the group: %s", v)
			}
			if tc.wantFleet != "" {
				if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet(tc.wantFleet), " "); got != want {
					t.Errorf("fleet\n got %s\nwant %s", got, want)
				}
			}
			if tc.wantStatus == StatusRolledBack {
				h.checkInvariants()
			}
			for id, n := range h.cloud.terminated {
				if n > 1 {
					t.Errorf("%s terminated %d times", id, n)
				}
			}
		})
	}
}

// sortedLike orders ps as SuspendedProcesses lists them.
func sortedLike(ps []string) []string {
	var out []string
	for _, p := range SuspendedProcesses {
		for _, q := range ps {
			if p == q {
				out = append(out, p)
			}
		}
	}
	return out
}
