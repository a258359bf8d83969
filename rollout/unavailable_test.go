package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestEngineStopsOnUnavailableCloud: an effect the cloud keeps refusing
// through the provider's retries (ErrUnavailable) stops the engine with
// the AWS error in its message, neither failing nor rolling back the
// change, and frees the group; once the cloud answers, resume finishes it.
func TestEngineStopsOnUnavailableCloud(t *testing.T) {
	for _, op := range []string{"TerminateInstanceInAutoScalingGroup", "SetDesiredCapacity", "DescribeAutoScalingGroups"} {
		t.Run(op, func(t *testing.T) {
			h := newHarness(t)
			refusal := fmt.Errorf("operation error Auto Scaling: %s, exceeded maximum number of attempts, 3, api error Throttling: Rate exceeded: %w", op, ErrUnavailable)
			e := h.engine()
			// Refuse once the change is under way: after its first
			// termination for the others, from the start for the
			// termination itself.
			e.View = func(st *State) {
				if op == "TerminateInstanceInAutoScalingGroup" || h.cloud.calls["TerminateInstanceInAutoScalingGroup"] > 0 {
					h.cloud.failCalls[op] = refusal
				}
			}
			st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
			if err == nil || !strings.Contains(err.Error(), "Throttling: Rate exceeded") || !strings.Contains(err.Error(), "wsfleet resume -c "+st.Change) {
				t.Fatalf("err = %v, want the AWS error and how to resume", err)
			}
			if errors.Is(err, ErrFailed) || st.Status.Final() || st.Status == StatusFailed || st.Rollback {
				t.Fatalf("status %s (rollback %v): a cloud that refuses is not a failed change", st.Status, st.Rollback)
			}
			delete(h.cloud.failCalls, op)
			if op != "DescribeAutoScalingGroups" && h.cloud.tags[LockTag] != "" {
				t.Errorf("the stopped engine kept the lock %q", h.cloud.tags[LockTag])
			}
			st, err = h.engine().Resume(context.Background(), st.Change, false)
			if err != nil || st.Status != StatusSucceeded {
				t.Fatalf("resume: %v, status %s: %s", err, st.Status, st.Failure)
			}
			if got, want := strings.Join(h.fleet(), " "), strings.Join(wantFleet("ami-new"), " "); got != want {
				t.Errorf("fleet\n got %s\nwant %s", got, want)
			}
			h.checkInvariants()
		})
	}
}
