package localcloud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestS3AWSCLI drives S3 with the AWS CLI's s3api (botocore's serializers
// and parsers, its checksums), the way an operator inspecting the
// rollout's state would. Its fifteen CLI runs take 20 s and more, so it
// runs only with WSFLEET_S3_CLI=1 (`make test-s3-cli`, and `make test`,
// which sets it for its go test; docs/cloud.md has its last result).
func TestS3AWSCLI(t *testing.T) {
	if os.Getenv("WSFLEET_S3_CLI") != "1" {
		t.Skip("set WSFLEET_S3_CLI=1 (make test-s3-cli) to run the AWS CLI against S3")
	}
	c, _ := startCloud(t, fastConfig())
	run, must := awsCLI(t, c.Endpoint(), "AKIDS3CLI")
	wantErr := func(code string, args ...string) {
		t.Helper()
		if _, err := run(args...); err == nil || !strings.Contains(err.Error(), code) {
			t.Errorf("aws %s: %v, want %s", strings.Join(args, " "), err, code)
		}
	}
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := file("v1.json", `{"holder":"a"}`)
	v2 := file("v2.json", `{"holder":"b"}`)
	big := file("big", strings.Repeat("wsfleet ", 1<<17)) // 1 MiB: several chunks

	must("s3api", "create-bucket", "--bucket", "cli-state")
	wantErr("BucketAlreadyOwnedByYou", "s3api", "create-bucket", "--bucket", "cli-state")

	p1 := must("s3api", "put-object", "--bucket", "cli-state", "--key", "changes/c1/state.json", "--body", v1, "--content-type", "application/json", "--if-none-match", "*")
	if p1["ETag"] != md5ETag([]byte(`{"holder":"a"}`)) {
		t.Errorf("put-object ETag %v", p1["ETag"])
	}
	wantErr("PreconditionFailed", "s3api", "put-object", "--bucket", "cli-state", "--key", "changes/c1/state.json", "--body", v2, "--if-none-match", "*")
	p2 := must("s3api", "put-object", "--bucket", "cli-state", "--key", "changes/c1/state.json", "--body", v2, "--content-type", "application/json", "--if-match", p1["ETag"].(string))
	wantErr("PreconditionFailed", "s3api", "put-object", "--bucket", "cli-state", "--key", "changes/c1/state.json", "--body", v1, "--if-match", p1["ETag"].(string))
	// A 1 MiB upload goes as several aws-chunked chunks: its ETag is the
	// MD5 of the decoded bytes.
	if pb := must("s3api", "put-object", "--bucket", "cli-state", "--key", "changes/c1/big", "--body", big); pb["ETag"] != md5ETag([]byte(strings.Repeat("wsfleet ", 1<<17))) {
		t.Errorf("1 MiB put-object: ETag %v", pb["ETag"])
	}

	out := filepath.Join(dir, "out")
	g := must("s3api", "get-object", "--bucket", "cli-state", "--key", "changes/c1/state.json", out)
	if b, _ := os.ReadFile(out); string(b) != `{"holder":"b"}` || g["ETag"] != p2["ETag"] || g["ContentType"] != "application/json" || g["ContentLength"] != float64(14) || g["LastModified"] == nil {
		t.Errorf("get-object: %q %v", b, g)
	}
	wantErr("PreconditionFailed", "s3api", "get-object", "--bucket", "cli-state", "--key", "changes/c1/state.json", "--if-match", p1["ETag"].(string), out)
	h := must("s3api", "head-object", "--bucket", "cli-state", "--key", "changes/c1/state.json")
	if h["ETag"] != p2["ETag"] || h["ContentLength"] != float64(14) {
		t.Errorf("head-object: %v", h)
	}
	wantErr("304", "s3api", "head-object", "--bucket", "cli-state", "--key", "changes/c1/state.json", "--if-none-match", p2["ETag"].(string))

	// list-objects-v2 asks for encoding-type=url and decodes the keys.
	must("s3api", "put-object", "--bucket", "cli-state", "--key", "changes/c 2/state+x.json", "--body", v1)
	l := must("s3api", "list-objects-v2", "--bucket", "cli-state", "--prefix", "changes/", "--delimiter", "/")
	if cps, _ := l["CommonPrefixes"].([]any); len(cps) != 2 || dig(l, "CommonPrefixes", 0, "Prefix") != "changes/c 2/" || dig(l, "CommonPrefixes", 1, "Prefix") != "changes/c1/" {
		t.Errorf("list-objects-v2 with delimiter: %v", l)
	}
	// The CLI pages through max-items by itself with continuation tokens.
	l = must("s3api", "list-objects-v2", "--bucket", "cli-state", "--page-size", "1")
	var keys []string
	for _, o := range l["Contents"].([]any) {
		keys = append(keys, o.(map[string]any)["Key"].(string))
	}
	if strings.Join(keys, "|") != "changes/c 2/state+x.json|changes/c1/big|changes/c1/state.json" {
		t.Errorf("list-objects-v2 paged by 1: %v", keys)
	}

	must("s3api", "delete-object", "--bucket", "cli-state", "--key", "changes/c1/state.json")
	wantErr("(404)", "s3api", "head-object", "--bucket", "cli-state", "--key", "changes/c1/state.json")
	lb := must("s3api", "list-buckets")
	if dig(lb, "Buckets", 0, "Name") != "cli-state" {
		t.Errorf("list-buckets: %v", lb)
	}
	if c.AccessKeys()["AKIDS3CLI"] == 0 {
		t.Errorf("the CLI's access key was not recorded")
	}
}
