package rollout

import "testing"

// RunS3Scenarios runs the S3 backend's scenarios (hand-over between two
// machines, a stale write, an unreachable bucket, and every crashStride-th
// crash point; 0: none) with the fleet in memory and the state in buckets
// newBucket makes: the external tests give the local cloud's S3.
func RunS3Scenarios(t *testing.T, newBucket func(*testing.T) Objects, crashStride int) {
	runS3Scenarios(t, newBucket, crashStride)
}
