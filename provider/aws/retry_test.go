package aws

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"wsfleet/rollout"
)

// TestRetriesThrottlingAnd5xx: the configured SDK retryer retries a
// throttled call and a 503 with backoff, and the call counter counts the
// operation once.
func TestRetriesThrottlingAnd5xx(t *testing.T) {
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := attempts.Add(1)
		w.Header().Set("Content-Type", "text/xml")
		switch n {
		case 1:
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>`))
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>try again</Message></Error><RequestId>2</RequestId></ErrorResponse>`))
		default:
			w.Write([]byte(`<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><DescribeAutoScalingGroupsResult><AutoScalingGroups/></DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>3</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>`))
		}
	}))
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	p, err := New(context.Background(), Config{Region: "us-east-1", Endpoint: srv.URL, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Group(context.Background(), "gitter-ws")
	if !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("err = %v, want not found after the retries", err)
	}
	if n := attempts.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	if c := p.APICalls()["DescribeAutoScalingGroups"]; c != 1 {
		t.Errorf("counted %d calls, want 1", c)
	}

	// A client error is not retried.
	attempts.Store(100)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code><Message>bad</Message></Error><RequestId>4</RequestId></ErrorResponse>`))
	})
	_, err = p.Group(context.Background(), "gitter-ws")
	if err == nil || !strings.Contains(err.Error(), "ValidationError") || attempts.Load() != 101 {
		t.Errorf("validation error: %v after %d attempts", err, attempts.Load()-100)
	}
}
