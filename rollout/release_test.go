package rollout

import (
	"context"
	"errors"
	"testing"
)

// TestEngineReleaseRetries checks that a finished rollout whose lock
// release meets a passing fault still frees the group.
func TestEngineReleaseRetries(t *testing.T) {
	h := newHarness(t)
	h.cloud.floor = 8
	e := h.engine()
	injected := false
	e.View = func(st *State) {
		// Once every step is done, the next group-tag write (the
		// release) fails once.
		if st.Cursor == len(st.Steps) && !injected {
			injected = true
			h.cloud.mu.Lock()
			h.cloud.failOnce = map[string]error{"CreateOrUpdateTags": errors.New("injected")}
			h.cloud.mu.Unlock()
		}
	}
	st, err := e.Start(context.Background(), seedPlan(h.site.URL, "launch-before-terminate"))
	if err != nil || st.Status != StatusSucceeded {
		t.Fatalf("rollout: %v, status %s", err, st.Status)
	}
	if !injected || len(h.cloud.failOnce) != 0 {
		t.Fatalf("the release met no fault")
	}
	h.checkInvariants()
}
