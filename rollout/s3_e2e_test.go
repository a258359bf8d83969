package rollout_test

// The S3 backend against the local cloud's S3, through aws-sdk-go-v2's
// client (provider/aws.Objects): the scenarios of objstore_test.go with
// the fleet in memory and every state, event and report write a real
// conditional PutObject.

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"wsfleet/localcloud"
	awsprov "wsfleet/provider/aws"
	"wsfleet/rollout"
)

// startS3 starts a local cloud for its S3 and returns a maker of fresh
// buckets on it, reached as the engine reaches them.
func startS3(t *testing.T) func(*testing.T) rollout.Objects {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cloud, err := localcloud.Start(ctx, localcloud.Config{Listen: "127.0.0.1:0", S3Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	var n atomic.Int32
	return func(t *testing.T) rollout.Objects {
		bucket := fmt.Sprintf("wsfleet-state-%d", n.Add(1))
		objs, err := awsprov.NewObjects(ctx, awsprov.Config{Region: "us-east-1", Endpoint: cloud.Endpoint(), MaxBackoff: 100 * time.Millisecond}, bucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := objs.Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
			t.Fatal(err)
		}
		return objs
	}
}

// TestS3BackendLocalCloud: hand-over, two resumes at once (twenty
// times), a stale write and an unreachable bucket, with the state in the
// local cloud's S3. Every crash point too with WSFLEET_S3_CRASH=1 (make
// test-s3-crash): each point is a whole rollout of some hundred
// conditional writes, which the local cloud makes durable one by one.
func TestS3BackendLocalCloud(t *testing.T) {
	parallelShared(t)
	stride := 0
	if os.Getenv("WSFLEET_S3_CRASH") == "1" {
		stride = 1
	}
	rollout.RunS3Scenarios(t, startS3(t), stride)
}
