package localcloud

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
)

// TestHandlerPanicReleasesLock runs an action that panics while it holds
// the API mutex (as every handler does) and then makes ordinary calls: the
// panic is answered with InternalFailure, and the calls after it are
// answered at once instead of waiting forever on a mutex left locked.
func TestHandlerPanicReleasesLock(t *testing.T) {
	table := map[string]map[string]handler{}
	for svc, m := range actions {
		table[svc] = maps.Clone(m)
	}
	table[svcASG]["PanicForTest"] = func(c *Cloud, req *request, x *xmlw) *apiError {
		x.open("HalfWritten")
		panic("a handler bug")
	}
	cfg := fastConfig()
	cfg.actions = table
	c, cl := startCloud(t, cfg)
	client := &http.Client{Timeout: 5 * time.Second}
	form := url.Values{"Action": {"PanicForTest"}, "Version": {asgVersion}}.Encode()

	for i := range 2 {
		resp, err := client.Post(c.Endpoint(), "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			t.Fatalf("panicking call %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "<Code>InternalFailure</Code>") || strings.Contains(string(body), "HalfWritten") {
			t.Fatalf("panicking call %d: %d %s", i, resp.StatusCode, body)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err = cl.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
		cancel()
		if err != nil {
			t.Fatalf("call after panic %d: %v after %s (API mutex left locked?)", i, err, time.Since(start))
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("call after panic %d took %s", i, d)
		}
	}
	// The mutex is free for the cloud's own users too.
	done := make(chan map[string]int, 1)
	go func() { done <- c.AccessKeys() }()
	select {
	case keys := <-done:
		if keys["AKIDTEST"] != 2 {
			t.Errorf("access keys %v, want AKIDTEST: 2", keys)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("AccessKeys blocked after a handler panicked")
	}
}
