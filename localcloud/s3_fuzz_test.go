package localcloud

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzS3Route feeds the S3 router arbitrary methods, hosts, paths and
// queries: it must never panic, a request it accepts names an operation,
// and a bucket it reads from the Host is the one virtualBucket gives.
func FuzzS3Route(f *testing.F) {
	f.Add("PUT", "127.0.0.1:4566", "/state/changes/c1/state.json", "x-id=PutObject", "")
	f.Add("GET", "state.localhost:4566", "/", "list-type=2&prefix=changes%2F&delimiter=%2F&max-keys=2", "")
	f.Add("GET", "my.bucket.s3.us-east-1.amazonaws.com", "/a//b/../c", "", "")
	f.Add("HEAD", "[::1]:4566", "/b", "", "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s3/aws4_request")
	f.Add("POST", "localhost", "/", "Action=DescribeInstances", "")
	f.Add("DELETE", "s3.localhost", "/b/k", "uploadId=1&versionId=2", "")
	f.Add("GET", "x", "/b", "X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request", "")
	f.Fuzz(func(t *testing.T, method, host, path, rawQuery, auth string) {
		defer failSlow(t, time.Now())
		isS3Request(method, host, rawQuery, auth)
		op := parseS3(method, host, path, rawQuery)
		if op.Err == nil {
			if op.Name == "" {
				t.Fatalf("no operation and no error for %s %s %s", method, host, path)
			}
			if len(op.Key) > 1024 {
				t.Fatalf("key of %d bytes accepted", len(op.Key))
			}
			if vb := virtualBucket(host); vb != "" && op.Bucket != vb {
				t.Fatalf("bucket %q, Host names %q", op.Bucket, vb)
			}
		} else if op.Err.Status < 400 || op.Err.Code == "" {
			t.Fatalf("error without a status or code: %+v", op.Err)
		}
		if e := validBucketName(op.Bucket); e == nil && (strings.ContainsAny(op.Bucket, "/\\") || op.Bucket == "." || op.Bucket == "..") {
			t.Fatalf("bucket name %q accepted though it is not a plain folder name", op.Bucket)
		}
	})
}

// FuzzS3Chunked decodes arbitrary aws-chunked bodies (never a panic, never
// more bytes out than in) and checks that data cut into chunks anywhere
// comes back whole.
func FuzzS3Chunked(f *testing.F) {
	f.Add([]byte("5;chunk-signature=aa\r\nhello\r\n0;chunk-signature=bb\r\n\r\n"), []byte("hello world"), uint8(3))
	f.Add([]byte("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"), []byte{}, uint8(0))
	f.Add([]byte("fffffffffffffff\r\n"), []byte("x"), uint8(1))
	f.Fuzz(func(t *testing.T, raw, data []byte, cut uint8) {
		defer failSlow(t, time.Now())
		out, err := io.ReadAll(newChunkedReader(bytes.NewReader(raw)))
		if len(out) > len(raw) {
			t.Fatalf("%d bytes out of %d in", len(out), len(raw))
		}
		_ = err
		var enc bytes.Buffer
		step := int(cut) + 1
		for i := 0; i < len(data); i += step {
			j := min(i+step, len(data))
			fmt.Fprintf(&enc, "%x;chunk-signature=00\r\n%s\r\n", j-i, data[i:j])
		}
		enc.WriteString("0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n")
		cr := newChunkedReader(&enc)
		got, err := io.ReadAll(cr)
		if err != nil || !bytes.Equal(got, data) || cr.trailers["x-amz-checksum-crc32"] != "AAAAAA==" {
			t.Fatalf("round trip of %d bytes in chunks of %d: %d bytes, %v, trailers %v", len(data), step, len(got), err, cr.trailers)
		}
	})
}

// FuzzS3API sends arbitrary S3 requests to a live cloud: each gets an
// answer, and no handler crashes (a panic answers 500 InternalError).
func FuzzS3API(f *testing.F) {
	cfg := fastConfig()
	cfg.S3MaxObjectSize = 1 << 16
	c, err := Start(context.Background(), cfg)
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	methods := []string{"GET", "PUT", "HEAD", "DELETE", "POST"}
	f.Add(1, "/fuzz", "", "", "", []byte(""))
	f.Add(1, "/fuzz/k", "", "*", "", []byte("v"))
	f.Add(1, "/fuzz/k", "\"0\"", "", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", []byte("1\r\nv\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"))
	f.Add(0, "/fuzz", "", "", "", []byte("list-type=2&continuation-token=azph"))
	f.Add(0, "/fuzz/k", "*", "W/\"x\", \"y\"", "", []byte("bytes=-1"))
	f.Fuzz(func(t *testing.T, m int, path, ifMatch, ifNoneMatch, sha string, body []byte) {
		defer failSlow(t, time.Now())
		if m < 0 {
			m = -m
		}
		method := methods[m%len(methods)]
		u := c.Endpoint() + "/"
		if strings.HasPrefix(path, "/") && !strings.ContainsAny(path, " \t\r\n#?%") {
			u = c.Endpoint() + path
		}
		var rd io.Reader = bytes.NewReader(body)
		if method == "GET" || method == "HEAD" {
			u += "?" + strings.Map(func(r rune) rune {
				if r < 0x21 || r == '#' || r > 0x7e {
					return -1
				}
				return r
			}, string(body))
			rd = nil
		}
		req, err := http.NewRequest(method, u, rd)
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKFUZZ/20260101/us-east-1/s3/aws4_request")
		for k, v := range map[string]string{"If-Match": ifMatch, "If-None-Match": ifNoneMatch, "x-amz-content-sha256": sha, "Range": ifMatch} {
			if v != "" && !strings.ContainsAny(v, "\r\n\x00") {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return // a header the client refuses to send
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 && resp.StatusCode != 501 {
			t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, b)
		}
	})
}
