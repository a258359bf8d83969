package localcloud

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// S3's REST API shares the endpoint with the Query APIs. A request is S3's
// when its SigV4 credential scope says s3, when (without a scope) its Host
// names a bucket (virtual-host style), or, unsigned, when it is not a
// Query call (no Action parameter, not a POST). Path-style requests name the bucket in
// the path's first segment: /{bucket}/{key}.

// s3Op is one parsed S3 request.
type s3Op struct {
	Name   string // the S3 operation, e.g. PutObject; "" with Err set
	Bucket string
	Key    string
	Query  url.Values
	Err    *s3Error
}

// isS3Request says whether a request is for S3 rather than a Query API:
// the credential scope decides when there is one (a Query call through a
// Host that looks like a bucket's stays a Query call), then a bucket in the
// Host, then the request's form.
func isS3Request(method, host, rawQuery, authorization string) bool {
	q, _ := url.ParseQuery(rawQuery)
	_, svc := parseCredential(authorization)
	if svc == "" {
		_, svc = parseCredential("Credential=" + q.Get("X-Amz-Credential"))
	}
	switch svc {
	case "s3":
		return true
	case svcEC2, svcASG, svcELB:
		return false
	}
	if virtualBucket(host) != "" {
		return true
	}
	return !q.Has("Action") && method != http.MethodPost
}

// virtualBucket returns the bucket a virtual-host-style Host names: the
// labels before ".s3.localhost" or ".localhost" (the SDKs' virtual-host
// form of an endpoint on s3.localhost or localhost) or before ".s3." / ".s3-" (AWS's own endpoint names);
// "" for an IP address or any other host, which is path style.
func virtualBucket(host string) string {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" || net.ParseIP(strings.Trim(h, "[]")) != nil {
		return ""
	}
	var b string
	if strings.HasSuffix(h, ".s3.localhost") {
		// BUCKET.s3.localhost: what an SDK with the endpoint
		// s3.localhost:PORT (path style, below) asks in virtual-host style.
		b = strings.TrimSuffix(h, ".s3.localhost")
	} else if strings.HasSuffix(h, ".localhost") {
		b = strings.TrimSuffix(h, ".localhost")
	} else if i := max(strings.LastIndex(h, ".s3."), strings.LastIndex(h, ".s3-")); i > 0 {
		b = h[:i]
	}
	if b == "s3" {
		return "" // s3.localhost: the service's own name, path style
	}
	return b
}

// unsupportedS3 are sub-resources of S3's API the local cloud does not
// serve; a request naming one gets NotImplemented rather than being
// mistaken for the plain operation on the same path.
var unsupportedS3 = []string{
	"accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
	"intelligent-tiering", "inventory", "legal-hold", "lifecycle", "location", "logging",
	"metadataConfiguration", "metrics", "notification", "object-lock", "ownershipControls",
	"partNumber", "policy", "policyStatus", "publicAccessBlock", "renameObject", "replication",
	"requestPayment", "restore", "retention", "select", "session", "tagging", "torrent",
	"uploadId", "uploads", "versionId", "versioning", "versions", "website",
}

// The operations served, by what the path names (the service, a bucket, an
// object) and the HTTP method.
var (
	s3ServiceOps = map[string]string{http.MethodGet: "ListBuckets"}
	s3BucketOps  = map[string]string{http.MethodPut: "CreateBucket", http.MethodHead: "HeadBucket", http.MethodDelete: "DeleteBucket", http.MethodGet: "ListObjectsV2"}
	s3ObjectOps  = map[string]string{http.MethodPut: "PutObject", http.MethodGet: "GetObject", http.MethodHead: "HeadObject", http.MethodDelete: "DeleteObject"}
)

// parseS3 decides which S3 operation a request is: the bucket from the Host
// (virtual-host style) or the path's first segment (path style), the key
// from the rest of the path.
func parseS3(method, host, path, rawQuery string) s3Op {
	q, err := url.ParseQuery(rawQuery)
	op := s3Op{Query: q}
	if err != nil {
		op.Err = &s3Error{Status: 400, Code: "InvalidArgument", Message: "malformed query string"}
		return op
	}
	rest := strings.TrimPrefix(path, "/")
	if b := virtualBucket(host); b != "" {
		op.Bucket, op.Key = b, rest
	} else {
		op.Bucket, op.Key, _ = strings.Cut(rest, "/")
	}
	if !utf8.ValidString(op.Key) {
		op.Err = &s3Error{Status: 400, Code: "InvalidArgument", Message: "object keys must be UTF-8"}
		return op
	}
	if len(op.Key) > 1024 {
		op.Err = &s3Error{Status: 400, Code: "KeyTooLongError", Message: "Your key is too long"}
		return op
	}
	for _, sub := range unsupportedS3 {
		if q.Has(sub) {
			op.Err = &s3Error{Status: 501, Code: "NotImplemented", Message: "the local cloud does not serve the ?" + sub + " sub-resource"}
			return op
		}
	}
	switch {
	case op.Bucket == "":
		op.Name = s3ServiceOps[method]
	case op.Key == "":
		op.Name = s3BucketOps[method]
		if op.Name == "ListObjectsV2" && q.Get("list-type") != "2" {
			op.Err = &s3Error{Status: 501, Code: "NotImplemented", Message: "the local cloud serves ListObjectsV2 (list-type=2), not ListObjects"}
			return op
		}
	default:
		op.Name = s3ObjectOps[method]
	}
	if op.Name == "" {
		op.Err = &s3Error{Status: http.StatusMethodNotAllowed, Code: "MethodNotAllowed", Message: "The specified method is not allowed against this resource."}
	}
	return op
}

// validBucketName applies S3's naming rules for general purpose buckets:
// 3 to 63 characters of lower-case letters, digits, dots and hyphens,
// beginning and ending with a letter or digit, no two adjacent dots, not
// an IP address, and none of the reserved prefixes and suffixes.
func validBucketName(name string) *s3Error {
	bad := func(why string) *s3Error {
		return &s3Error{Status: 400, Code: "InvalidBucketName", Message: "The specified bucket is not valid: " + why, BucketName: name}
	}
	if len(name) < 3 || len(name) > 63 {
		return bad("a bucket name is 3 to 63 characters long")
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '-') {
			return bad("only lower-case letters, digits, dots and hyphens")
		}
	}
	alnum := func(ch byte) bool { return ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' }
	if !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return bad("must begin and end with a letter or digit")
	}
	if strings.Contains(name, "..") {
		return bad("no two adjacent periods")
	}
	if net.ParseIP(name) != nil {
		return bad("not formatted as an IP address")
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return bad("the prefix " + p + " is reserved")
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(name, s) {
			return bad("the suffix " + s + " is reserved")
		}
	}
	return nil
}
