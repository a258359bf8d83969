package localcloud

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// s3Clients returns the two ways an aws-sdk-go-v2 S3 client addresses a
// bucket on this cloud: path style (what the SDK picks for an IP
// endpoint) and virtual-host style (an endpoint on localhost, the bucket
// in the Host header as bucket.localhost:port; the dialer goes to the
// cloud whatever the name).
func s3Clients(t *testing.T, c *Cloud) map[string]*s3.Client {
	t.Helper()
	_, port, _ := net.SplitHostPort(c.ln.Addr().String())
	dial := &net.Dialer{Timeout: 5 * time.Second}
	httpc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dial.DialContext(ctx, network, c.ln.Addr().String())
		},
	}}
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDS3", "s", "")}
	return map[string]*s3.Client{
		"path": s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(c.Endpoint()) }),
		"vhost": s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.BaseEndpoint = aws.String("http://localhost:" + port)
			o.HTTPClient = httpc
		}),
	}
}

// s3Status is an SDK error's HTTP status and S3 error code.
func s3Status(err error) (int, string) {
	var re *smithyhttp.ResponseError
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	return status, code
}

func md5ETag(b []byte) string {
	s := md5.Sum(b)
	return `"` + hex.EncodeToString(s[:]) + `"`
}

// TestS3SDK runs the rollout state's operations through aws-sdk-go-v2, path
// style and virtual-host style.
func TestS3SDK(t *testing.T) {
	c, _ := startCloud(t, fastConfig())
	ctx := context.Background()
	for style, cl := range s3Clients(t, c) {
		t.Run(style, func(t *testing.T) {
			bucket := "state-" + style
			if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err == nil {
				t.Fatal("second CreateBucket succeeded")
			} else if st, code := s3Status(err); st != 409 || code != "BucketAlreadyOwnedByYou" {
				t.Fatalf("second CreateBucket: %d %s %v", st, code, err)
			}
			if _, err := cl.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("nope-" + style)}); err == nil {
				t.Fatal("HeadBucket of a missing bucket succeeded")
			} else if st, _ := s3Status(err); st != 404 {
				t.Fatalf("HeadBucket missing: %d %v", st, err)
			}

			body := []byte(`{"change":"c-1","holder":"engine-a"}`)
			put, err := cl.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String(bucket), Key: aws.String("changes/c-1/state.json"), Body: bytes.NewReader(body),
				ContentType: aws.String("application/json"), IfNoneMatch: aws.String("*"),
				Metadata: map[string]string{"holder": "engine-a"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if aws.ToString(put.ETag) != md5ETag(body) {
				t.Errorf("ETag %s, want %s", aws.ToString(put.ETag), md5ETag(body))
			}
			_, err = cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("changes/c-1/state.json"), Body: strings.NewReader("x"), IfNoneMatch: aws.String("*")})
			if st, code := s3Status(err); st != 412 || code != "PreconditionFailed" {
				t.Errorf("If-None-Match on an existing key: %d %s %v", st, code, err)
			}
			get, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("changes/c-1/state.json")})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(get.Body)
			get.Body.Close()
			if !bytes.Equal(got, body) || aws.ToString(get.ETag) != md5ETag(body) || aws.ToString(get.ContentType) != "application/json" ||
				aws.ToInt64(get.ContentLength) != int64(len(body)) || get.LastModified == nil || time.Since(*get.LastModified) > time.Minute ||
				get.Metadata["holder"] != "engine-a" {
				t.Errorf("GetObject: %q %+v", got, get)
			}

			// Update with If-Match: the current ETag wins, a stale one is
			// refused, a missing key is NoSuchKey.
			body2 := []byte(`{"change":"c-1","holder":"engine-b"}`)
			put2, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("changes/c-1/state.json"), Body: bytes.NewReader(body2), IfMatch: put.ETag})
			if err != nil {
				t.Fatal(err)
			}
			_, err = cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("changes/c-1/state.json"), Body: strings.NewReader("stale"), IfMatch: put.ETag})
			if st, code := s3Status(err); st != 412 || code != "PreconditionFailed" {
				t.Errorf("If-Match with a stale ETag: %d %s %v", st, code, err)
			}
			_, err = cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("changes/c-9/state.json"), Body: strings.NewReader("x"), IfMatch: put.ETag})
			if st, code := s3Status(err); st != 404 || code != "NoSuchKey" {
				t.Errorf("If-Match on a missing key: %d %s %v", st, code, err)
			}

			// Conditional reads.
			head, err := cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("changes/c-1/state.json"), IfMatch: put2.ETag})
			if err != nil || aws.ToString(head.ETag) != md5ETag(body2) || aws.ToInt64(head.ContentLength) != int64(len(body2)) {
				t.Fatalf("HeadObject: %+v %v", head, err)
			}
			_, err = cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("changes/c-1/state.json"), IfMatch: put.ETag})
			if st, _ := s3Status(err); st != 412 {
				t.Errorf("HeadObject If-Match stale: %d %v", st, err)
			}
			_, err = cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("changes/c-1/state.json"), IfMatch: put.ETag})
			if st, code := s3Status(err); st != 412 || code != "PreconditionFailed" {
				t.Errorf("GetObject If-Match stale: %d %s %v", st, code, err)
			}
			_, err = cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("changes/c-1/state.json"), IfNoneMatch: put2.ETag})
			if st, _ := s3Status(err); st != 304 {
				t.Errorf("GetObject If-None-Match current: %d %v", st, err)
			}
			_, err = cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("changes/c-1/nope")})
			if st, code := s3Status(err); st != 404 || code != "NoSuchKey" {
				t.Errorf("GetObject missing: %d %s %v", st, code, err)
			}
			_, err = cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("nope-" + style), Key: aws.String("k")})
			if st, code := s3Status(err); st != 404 || code != "NoSuchBucket" {
				t.Errorf("GetObject in a missing bucket: %d %s %v", st, code, err)
			}

			// Listing, paginated, with a delimiter.
			for _, k := range []string{"changes/c-1/events/0001", "changes/c-1/events/0002", "changes/c-2/state.json", "changes/c-3/state.json", "top.txt"} {
				if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
					t.Fatal(err)
				}
			}
			var keys []string
			p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("changes/"), MaxKeys: aws.Int32(2)})
			pages := 0
			for p.HasMorePages() {
				out, err := p.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				for _, o := range out.Contents {
					keys = append(keys, aws.ToString(o.Key))
				}
			}
			if want := "changes/c-1/events/0001 changes/c-1/events/0002 changes/c-1/state.json changes/c-2/state.json changes/c-3/state.json"; strings.Join(keys, " ") != want || pages != 3 {
				t.Errorf("paginated list in %d pages: %v", pages, keys)
			}
			out, err := cl.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("changes/"), Delimiter: aws.String("/")})
			if err != nil {
				t.Fatal(err)
			}
			var cps []string
			for _, cp := range out.CommonPrefixes {
				cps = append(cps, aws.ToString(cp.Prefix))
			}
			if strings.Join(cps, " ") != "changes/c-1/ changes/c-2/ changes/c-3/" || len(out.Contents) != 0 || aws.ToInt32(out.KeyCount) != 3 {
				t.Errorf("delimited list: %v %+v", cps, out)
			}

			out, err = cl.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), StartAfter: aws.String("changes/c-2/state.json")})
			if err != nil || len(out.Contents) != 2 || aws.ToString(out.Contents[0].Key) != "changes/c-3/state.json" || aws.ToString(out.Contents[1].Key) != "top.txt" ||
				aws.ToInt64(out.Contents[1].Size) != 7 || aws.ToString(out.Contents[1].ETag) != md5ETag([]byte("top.txt")) || aws.ToBool(out.IsTruncated) {
				t.Errorf("list after start-after: %+v %v", out, err)
			}
			if _, err := cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("top.txt")}); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("top.txt")}); err != nil {
				t.Fatalf("deleting a missing key: %v", err)
			}
			if _, err := cl.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err == nil {
				t.Fatal("deleted a bucket with objects")
			} else if st, code := s3Status(err); st != 409 || code != "BucketNotEmpty" {
				t.Errorf("DeleteBucket not empty: %d %s", st, code)
			}
			lb, err := cl.ListBuckets(ctx, &s3.ListBucketsInput{})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, b := range lb.Buckets {
				found = found || aws.ToString(b.Name) == bucket
			}
			if !found {
				t.Errorf("ListBuckets lacks %s: %+v", bucket, lb.Buckets)
			}
		})
	}
	if c.AccessKeys()["AKIDS3"] == 0 {
		t.Errorf("S3 calls' access key not recorded")
	}
}

// TestS3ConditionalRace has many writers create one key with
// If-None-Match: * at once, then update it with If-Match on the same ETag
// at once: each time exactly one wins and the others get 412 or 409.
func TestS3ConditionalRace(t *testing.T) {
	c, cl := startCloud(t, fastConfig())
	ctx := context.Background()
	if _, err := cl.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("race")}); err != nil {
		t.Fatal(err)
	}
	_ = c
	const n = 16
	race := func(put func(i int) (*s3.PutObjectOutput, error)) (winner int, etag string) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		winner = -1
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				out, err := put(i)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					if winner >= 0 {
						t.Errorf("writers %d and %d both won", winner, i)
					}
					winner, etag = i, aws.ToString(out.ETag)
					return
				}
				if st, code := s3Status(err); !(st == 412 && code == "PreconditionFailed" || st == 409 && code == "ConditionalRequestConflict") {
					t.Errorf("writer %d: %d %s %v", i, st, code, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if winner < 0 {
			t.Fatal("no writer won")
		}
		return winner, etag
	}
	// Each race's bodies differ from the other race's: a writer whose
	// body equals the object's keeps its ETag, and S3 then lets a second
	// If-Match on that ETag win as well (the race would have two winners
	// by S3's own rule, not by a fault of the store).
	body := func(race, i int) io.Reader {
		return strings.NewReader(fmt.Sprintf("writer %d race %d %s", i, race, strings.Repeat("x", 64<<10)))
	}
	w1, etag := race(func(i int) (*s3.PutObjectOutput, error) {
		return cl.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("race"), Key: aws.String("lock"), Body: body(1, i), IfNoneMatch: aws.String("*")})
	})
	w2, _ := race(func(i int) (*s3.PutObjectOutput, error) {
		return cl.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("race"), Key: aws.String("lock"), Body: body(2, i), IfMatch: aws.String(etag)})
	})
	get, err := cl.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("race"), Key: aws.String("lock")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(get.Body)
	get.Body.Close()
	if !strings.HasPrefix(string(b), fmt.Sprintf("writer %d ", w2)) {
		t.Errorf("object is %.20q, want the second race's winner %d (first %d)", b, w2, w1)
	}
}

// TestS3ConflictDuringUpload holds a conditional upload open while another
// write lands: the upload, whose condition held when it arrived, gets 409
// ConditionalRequestConflict, and the other write stays.
func TestS3ConflictDuringUpload(t *testing.T) {
	c, cl := startCloud(t, fastConfig())
	ctx := context.Background()
	if _, err := cl.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("conflict")}); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPut, c.Endpoint()+"/conflict/k", pr)
	req.ContentLength = 10
	req.Header.Set("If-None-Match", "*")
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	pw.Write([]byte("slow-"))
	// The slow upload has arrived (its first bytes are in); another
	// writer creates the key meanwhile.
	eventually(t, 5*time.Second, "slow upload started", func() error {
		ents, _ := listTmp(c, "conflict")
		if ents == 0 {
			return errors.New("no upload in flight")
		}
		return nil
	})
	if _, err := cl.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("conflict"), Key: aws.String("k"), Body: strings.NewReader("fast"), IfNoneMatch: aws.String("*")}); err != nil {
		t.Fatal(err)
	}
	pw.Write([]byte("write"))
	pw.Close()
	resp := <-done
	if resp == nil {
		t.FailNow()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 409 || !strings.Contains(string(b), "<Code>ConditionalRequestConflict</Code>") {
		t.Errorf("slow upload: %d %s", resp.StatusCode, b)
	}
	get, err := cl.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("conflict"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(get.Body)
	get.Body.Close()
	if string(got) != "fast" {
		t.Errorf("object %q, want the fast write", got)
	}
	if n, _ := listTmp(c, "conflict"); n != 0 {
		t.Errorf("%d temporary files left behind", n)
	}
}

// listTmp counts a bucket's uploads in flight.
func listTmp(c *Cloud, bucket string) (int, error) {
	ents, err := readDirNames(c.s3.bucketDir(bucket))
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e, ".tmp-") {
			n++
		}
	}
	return n, err
}

// TestS3Restart stops a cloud and starts another on the same S3 folder:
// buckets, objects, their ETags and metadata are all still there, and
// conditions still hold against them.
func TestS3Restart(t *testing.T) {
	ctx := context.Background()
	cfg := fastConfig()
	cfg.S3Dir = t.TempDir()
	c1, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl := c1.Clients("a").S3
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("keep")}); err != nil {
		t.Fatal(err)
	}
	put, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("keep"), Key: aws.String("a/../b//c d"), Body: strings.NewReader("kept"), ContentType: aws.String("text/plain")})
	if err != nil {
		t.Fatal(err)
	}
	// A second cloud on the same folder would not see the first one's
	// writes: it is refused while the first runs.
	if c, err := Start(ctx, cfg); err == nil {
		c.Close()
		t.Fatal("a second cloud started on a folder in use")
	} else if !strings.Contains(err.Error(), "in use by another local cloud") {
		t.Fatalf("second cloud on the folder: %v", err)
	}
	c1.Close()
	c2, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	cl = c2.Clients("a").S3
	get, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("keep"), Key: aws.String("a/../b//c d")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(get.Body)
	get.Body.Close()
	if string(b) != "kept" || aws.ToString(get.ETag) != aws.ToString(put.ETag) || aws.ToString(get.ContentType) != "text/plain" {
		t.Errorf("after restart: %q %+v", b, get)
	}
	_, err = cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("keep"), Key: aws.String("a/../b//c d"), Body: strings.NewReader("x"), IfNoneMatch: aws.String("*")})
	if st, _ := s3Status(err); st != 412 {
		t.Errorf("If-None-Match after restart: %d %v", st, err)
	}
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("keep")}); err == nil {
		t.Errorf("bucket not kept across the restart")
	}
}

// TestS3Errors checks S3's error document, bucket naming, the size bound
// and requests the local cloud does not serve, with raw HTTP.
func TestS3Errors(t *testing.T) {
	cfg := fastConfig()
	cfg.S3MaxObjectSize = 1024
	c, cl := startCloud(t, cfg)
	ctx := context.Background()
	if _, err := cl.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("errs")}); err != nil {
		t.Fatal(err)
	}
	do := func(method, path string, body io.Reader, hdr ...string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, c.Endpoint()+path, body)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		contains                 []string
	}{
		{"no such key", "GET", "/errs/missing", "", nil, 404, []string{`<?xml version="1.0" encoding="UTF-8"?>`, "<Error><Code>NoSuchKey</Code><Message>", "<Key>missing</Key>", "<Resource>/errs/missing</Resource>", "<RequestId>"}},
		{"no such bucket", "GET", "/nobucket/k", "", nil, 404, []string{"<Code>NoSuchBucket</Code>", "<BucketName>nobucket</BucketName>", "<Resource>/nobucket/k</Resource>"}},
		{"bad name upper", "PUT", "/Bad_Bucket", "", nil, 400, []string{"<Code>InvalidBucketName</Code>"}},
		{"bad name short", "PUT", "/ab", "", nil, 400, []string{"<Code>InvalidBucketName</Code>"}},
		{"bad name ip", "PUT", "/192.168.5.4", "", nil, 400, []string{"<Code>InvalidBucketName</Code>"}},
		{"bad name dots", "PUT", "/a..b", "", nil, 400, []string{"<Code>InvalidBucketName</Code>"}},
		{"bad name prefix", "PUT", "/xn--abc", "", nil, 400, []string{"<Code>InvalidBucketName</Code>"}},
		{"too large", "PUT", "/errs/big", strings.Repeat("x", 1025), nil, 400, []string{"<Code>EntityTooLarge</Code>"}},
		{"at the bound", "PUT", "/errs/big", strings.Repeat("x", 1024), nil, 200, nil},
		{"bad md5", "PUT", "/errs/md5", "abc", []string{"Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA=="}, 400, []string{"<Code>BadDigest</Code>"}},
		{"bad sha256", "PUT", "/errs/sha", "abc", []string{"x-amz-content-sha256", strings.Repeat("0", 64)}, 400, []string{"<Code>XAmzContentSHA256Mismatch</Code>"}},
		{"if-none-match etag", "PUT", "/errs/inm", "abc", []string{"If-None-Match", `"abc"`}, 501, []string{"<Code>NotImplemented</Code>"}},
		{"list v1", "GET", "/errs", "", nil, 501, []string{"<Code>NotImplemented</Code>"}},
		{"multipart", "POST", "/errs/k?uploads", "", []string{"Authorization", "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00"}, 501, []string{"<Code>NotImplemented</Code>"}},
		{"bad max-keys", "GET", "/errs?list-type=2&max-keys=x", "", nil, 400, []string{"<Code>InvalidArgument</Code>"}},
		{"bad token", "GET", "/errs?list-type=2&continuation-token=%21", "", nil, 400, []string{"<Code>InvalidArgument</Code>"}},
		{"delete bucket missing", "DELETE", "/nobucket", "", nil, 404, []string{"<Code>NoSuchBucket</Code>"}},
		{"bad location", "PUT", "/otherregion", `<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>`, nil, 400, []string{"IllegalLocationConstraintException"}},
		{"malformed config", "PUT", "/badxml", `<CreateBucketConfiguration>`, nil, 400, []string{"<Code>MalformedXML</Code>"}},
		{"range", "GET", "/errs/big", "", []string{"Range", "bytes=1020-"}, 206, []string{"xxxx"}},
		{"bad range", "GET", "/errs/big", "", []string{"Range", "bytes=5000-"}, 416, []string{"<Code>InvalidRange</Code>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := do(tc.method, tc.path, strings.NewReader(tc.body), tc.hdr...)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			for _, s := range tc.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q: %s", s, body)
				}
			}
			if hdr.Get("x-amz-request-id") == "" {
				t.Errorf("no x-amz-request-id")
			}
		})
	}
	// Query calls still reach the Query APIs on the same endpoint.
	status, _, body := do("POST", "/", strings.NewReader("Action=DescribeLoadBalancers"), "Content-Type", "application/x-www-form-urlencoded")
	if status != 200 || !strings.Contains(body, "<DescribeLoadBalancersResult>") {
		t.Errorf("Query call beside S3: %d %s", status, body)
	}
}

// TestS3Chunked uploads aws-chunked bodies as the AWS CLI (signed chunks)
// and the SDKs (unsigned chunks with a checksum trailer) send them.
func TestS3Chunked(t *testing.T) {
	c, cl := startCloud(t, fastConfig())
	ctx := context.Background()
	if _, err := cl.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("chunks")}); err != nil {
		t.Fatal(err)
	}
	data := strings.Repeat("0123456789abcdef", 5000) // 80000 bytes
	chunk := func(s, ext string) string { return fmt.Sprintf("%x%s\r\n%s\r\n", len(s), ext, s) }
	signed := chunk(data[:65536], ";chunk-signature=aa") + chunk(data[65536:], ";chunk-signature=bb") + "0;chunk-signature=cc\r\n\r\n"
	crc := "89uRXA==" // CRC32 of data (Python's zlib.crc32), checked below against hash/crc32
	trailer := chunk(data[:1000], "") + chunk(data[1000:], "") + "0\r\nx-amz-checksum-crc32:" + crc + "\r\n\r\n"
	badTrailer := chunk(data, "") + "0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
	if got := base64Sum(sumOf(s3Checksums["crc32"](), data)); got != crc {
		t.Fatalf("test's CRC32 is %s, computed %s", crc, got)
	}
	for _, tc := range []struct {
		name, body string
		hdr        []string
		status     int
	}{
		{"signed", signed, []string{"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "Content-Encoding", "aws-chunked", "x-amz-decoded-content-length", "80000"}, 200},
		{"unsigned trailer", trailer, []string{"x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "Content-Encoding", "aws-chunked", "x-amz-decoded-content-length", "80000", "x-amz-trailer", "x-amz-checksum-crc32"}, 200},
		{"bad trailer checksum", badTrailer, []string{"x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "Content-Encoding", "aws-chunked", "x-amz-decoded-content-length", "80000", "x-amz-trailer", "x-amz-checksum-crc32"}, 400},
		{"short", chunk(data[:10], "") + "0\r\n\r\n", []string{"x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-decoded-content-length", "80000"}, 400},
		{"truncated", signed[:1000], []string{"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPut, c.Endpoint()+"/chunks/"+url.PathEscape(tc.name), strings.NewReader(tc.body))
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.status != 200 {
				return
			}
			get, err := cl.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("chunks"), Key: aws.String(tc.name)})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(get.Body)
			get.Body.Close()
			if string(got) != data || aws.ToString(get.ETag) != md5ETag([]byte(data)) || aws.ToString(get.ContentEncoding) != "" {
				t.Errorf("decoded body: %d bytes, ETag %s, encoding %q", len(got), aws.ToString(get.ETag), aws.ToString(get.ContentEncoding))
			}
		})
	}
}

func sumOf(h hash.Hash, s string) hash.Hash {
	h.Write([]byte(s))
	return h
}

func readDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, err
}

// TestS3SDKChecksums uploads with each checksum the SDK offers: over TLS
// the SDK sends the body aws-chunked with the checksum as a trailer
// (STREAMING-UNSIGNED-PAYLOAD-TRAILER), over plain HTTP in a header; the
// cloud decodes the body and verifies the checksum either way.
func TestS3SDKChecksums(t *testing.T) {
	c, _ := startCloud(t, fastConfig())
	ctx := context.Background()
	var mu sync.Mutex
	encodings := map[string]bool{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		encodings[r.Header.Get("x-amz-content-sha256")] = true
		mu.Unlock()
		c.serveAPI(w, r)
	}))
	defer srv.Close()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDS3", "s", "")}
	clients := map[string]*s3.Client{
		"tls": s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.BaseEndpoint, o.HTTPClient, o.UsePathStyle = aws.String(srv.URL), srv.Client(), true
		}),
		"http": s3Clients(t, c)["path"],
	}
	if _, err := clients["http"].CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("sums")}); err != nil {
		t.Fatal(err)
	}
	data := strings.Repeat("checksummed ", 20000)
	for name, cl := range clients {
		for _, alg := range []s3types.ChecksumAlgorithm{s3types.ChecksumAlgorithmCrc32, s3types.ChecksumAlgorithmCrc32c, s3types.ChecksumAlgorithmCrc64nvme, s3types.ChecksumAlgorithmSha1, s3types.ChecksumAlgorithmSha256} {
			t.Run(name+"/"+string(alg), func(t *testing.T) {
				key := name + "/" + string(alg)
				// Over TLS, a body that cannot seek: the SDK streams it
				// (over HTTP the SDK needs to read it twice).
				var body io.Reader = strings.NewReader(data)
				if name == "tls" {
					body = struct{ io.Reader }{body}
				}
				if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("sums"), Key: aws.String(key), Body: body,
					ContentLength: aws.Int64(int64(len(data))), ChecksumAlgorithm: alg}); err != nil {
					t.Fatal(err)
				}
				get, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("sums"), Key: aws.String(key)})
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(get.Body)
				get.Body.Close()
				if string(got) != data || aws.ToString(get.ETag) != md5ETag([]byte(data)) {
					t.Errorf("got %d bytes, ETag %s", len(got), aws.ToString(get.ETag))
				}
			})
		}
	}
	if !encodings["STREAMING-UNSIGNED-PAYLOAD-TRAILER"] {
		t.Errorf("the SDK never sent an aws-chunked body with a trailer: %v", encodings)
	}
}

// TestS3Routing: which requests the endpoint takes for S3's and which for
// the Query APIs', and which bucket a Host names.
func TestS3Routing(t *testing.T) {
	sig := func(svc string) string {
		return "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/" + svc + "/aws4_request, SignedHeaders=host, Signature=00"
	}
	for _, tc := range []struct {
		name, method, host, query, auth string
		s3                              bool
	}{
		{"signed s3", "PUT", "127.0.0.1:4566", "", sig("s3"), true},
		{"signed s3 post", "POST", "127.0.0.1:4566", "uploads", sig("s3"), true},
		{"signed ec2 through a bucket-like host", "POST", "ec2.localhost:4566", "", sig("ec2"), false},
		{"signed autoscaling", "POST", "127.0.0.1:4566", "", sig("autoscaling"), false},
		{"presigned s3", "GET", "127.0.0.1:4566", "X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request", "", true},
		{"unsigned vhost", "POST", "b.localhost", "", "", true},
		{"unsigned query get", "GET", "127.0.0.1:4566", "Action=DescribeInstances", "", false},
		{"unsigned form post", "POST", "127.0.0.1:4566", "", "", false},
		{"unsigned get", "GET", "127.0.0.1:4566", "list-type=2", "", true},
		{"unsigned delete", "DELETE", "localhost", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isS3Request(tc.method, tc.host, tc.query, tc.auth); got != tc.s3 {
				t.Errorf("isS3Request = %v, want %v", got, tc.s3)
			}
		})
	}
	for host, want := range map[string]string{
		"127.0.0.1:4566": "", "localhost:4566": "", "[::1]:4566": "", "s3.localhost": "", "myhost:4566": "",
		"state.localhost:4566": "state", "my.state.localhost": "my.state", "State.LOCALHOST.": "state",
		"state.s3.us-east-1.amazonaws.com": "state", "a.s3.b.s3.eu-west-1.amazonaws.com": "a.s3.b", "state.s3-us-west-2.amazonaws.com": "state",
		"s3.us-east-1.amazonaws.com": "",
		// An SDK whose endpoint is http://s3.localhost:PORT (path style
		// there) puts the bucket before it when path style is off.
		"state.s3.localhost:4566": "state", "my.state.s3.localhost": "my.state", "s3.localhost:4566": "",
	} {
		if got := virtualBucket(host); got != want {
			t.Errorf("virtualBucket(%q) = %q, want %q", host, got, want)
		}
	}
}
