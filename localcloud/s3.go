package localcloud

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The S3 subset the rollout's remote state needs (buckets; PutObject,
// GetObject, HeadObject, ListObjectsV2, DeleteObject; conditional writes
// and reads), served as S3's REST API on the cloud's endpoint, with S3's
// XML error documents. Objects live in an s3Store on disk.

const (
	s3NS = "http://s3.amazonaws.com/doc/2006-03-01/"
	// DefaultS3MaxObjectSize bounds a PutObject body unless Config says
	// otherwise; AWS's single PUT takes up to 5 GiB.
	DefaultS3MaxObjectSize = 64 << 20
)

// s3Error is an S3 error document.
type s3Error struct {
	Status     int
	Code       string
	Message    string
	BucketName string
	Key        string
	Condition  string // the header of a failed precondition
}

func (e *s3Error) Error() string { return e.Code + ": " + e.Message }

func noSuchBucket(b string) *s3Error {
	return &s3Error{Status: 404, Code: "NoSuchBucket", Message: "The specified bucket does not exist", BucketName: b}
}

func noSuchKey(b, k string) *s3Error {
	return &s3Error{Status: 404, Code: "NoSuchKey", Message: "The specified key does not exist.", BucketName: b, Key: k}
}

func preconditionFailed(cond string) *s3Error {
	return &s3Error{Status: 412, Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold", Condition: cond}
}

func conditionalConflict() *s3Error {
	return &s3Error{Status: 409, Code: "ConditionalRequestConflict", Message: "A conflicting operation occurred during the upload. If using If-None-Match or If-Match, retry the request after reading the object again."}
}

func internalS3(err error) *s3Error {
	return &s3Error{Status: 500, Code: "InternalError", Message: "We encountered an internal error. Please try again. (" + err.Error() + ")"}
}

// serveS3 answers one S3 request; like serveAPI, no input may crash it.
func (c *Cloud) serveS3(w http.ResponseWriter, r *http.Request) {
	rid := strings.ToUpper(randHex(16))
	w.Header().Set("x-amz-request-id", rid)
	w.Header().Set("x-amz-id-2", base64.StdEncoding.EncodeToString([]byte(randHex(24))))
	op := s3Op{Name: "S3"}
	resource := r.URL.Path
	fail := func(e *s3Error) {
		c.log.Debug("s3 call failed", "op", op.Name, "bucket", op.Bucket, "code", e.Code)
		writeS3Error(w, r.Method, resource, rid, e)
	}
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("s3 handler panicked", "op", op.Name, "panic", v, "stack", string(debug.Stack()))
			fail(internalS3(fmt.Errorf("%v", v)))
		}
	}()
	ak, _ := parseCredential(r.Header.Get("Authorization"))
	if ak == "" {
		ak, _ = parseCredential("Credential=" + r.URL.Query().Get("X-Amz-Credential"))
	}
	if ak != "" {
		c.mu.Lock()
		c.accessKeys[ak]++
		c.mu.Unlock()
	}
	op = parseS3(r.Method, r.Host, r.URL.Path, r.URL.RawQuery)
	if op.Bucket != "" {
		resource = "/" + op.Bucket
		if op.Key != "" {
			resource += "/" + op.Key
		}
	}
	if op.Err != nil {
		fail(op.Err)
		return
	}
	var e *s3Error
	switch op.Name {
	case "ListBuckets":
		e = c.s3ListBuckets(w)
	case "CreateBucket":
		e = c.s3CreateBucket(w, r, op)
	case "HeadBucket":
		e = c.s3HeadBucket(w, op)
	case "DeleteBucket":
		e = c.s3DeleteBucket(w, op)
	case "ListObjectsV2":
		e = c.s3ListObjectsV2(w, op)
	case "PutObject":
		e = c.s3PutObject(w, r, op)
	case "GetObject", "HeadObject":
		e = c.s3GetObject(w, r, op)
	case "DeleteObject":
		e = c.s3DeleteObject(w, r, op)
	}
	if e != nil {
		fail(e)
		return
	}
	c.log.Debug("s3 call", "op", op.Name, "bucket", op.Bucket)
}

// writeS3Error writes S3's error document; HEAD answers carry none.
func writeS3Error(w http.ResponseWriter, method, resource, rid string, e *s3Error) {
	if method == http.MethodHead {
		w.WriteHeader(e.Status)
		return
	}
	var x xmlw
	x.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	x.open("Error")
	x.leaf("Code", e.Code)
	x.leaf("Message", e.Message)
	x.opt("BucketName", e.BucketName)
	x.opt("Key", e.Key)
	x.opt("Condition", e.Condition)
	x.leaf("Resource", resource)
	x.leaf("RequestId", rid)
	x.leaf("HostId", w.Header().Get("x-amz-id-2"))
	x.close("Error")
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(x.b.Len()))
	w.WriteHeader(e.Status)
	w.Write(x.b.Bytes())
}

func writeS3XML(w http.ResponseWriter, x *xmlw) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(x.b.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(x.b.Bytes())
}

func (c *Cloud) s3ListBuckets(w http.ResponseWriter) *s3Error {
	var x xmlw
	x.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	x.b.WriteString(`<ListAllMyBucketsResult xmlns="` + s3NS + `">`)
	x.open("Owner")
	x.leaf("ID", accountID)
	x.leaf("DisplayName", "local")
	x.close("Owner")
	x.open("Buckets")
	for _, b := range c.s3.bucketList() {
		x.open("Bucket")
		x.leaf("Name", b.name)
		x.time("CreationDate", b.created)
		x.leaf("BucketRegion", c.cfg.Region)
		x.close("Bucket")
	}
	x.close("Buckets")
	x.close("ListAllMyBucketsResult")
	writeS3XML(w, &x)
	return nil
}

func (c *Cloud) s3CreateBucket(w http.ResponseWriter, r *http.Request, op s3Op) *s3Error {
	if e := validBucketName(op.Bucket); e != nil {
		return e
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return &s3Error{Status: 400, Code: "IncompleteBody", Message: "read request body: " + err.Error()}
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		var cfg struct {
			XMLName            xml.Name `xml:"CreateBucketConfiguration"`
			LocationConstraint string   `xml:"LocationConstraint"`
		}
		if err := xml.Unmarshal(body, &cfg); err != nil {
			return &s3Error{Status: 400, Code: "MalformedXML", Message: "The XML you provided was not well-formed or did not validate against our published schema"}
		}
		if cfg.LocationConstraint != "" && cfg.LocationConstraint != c.cfg.Region {
			return &s3Error{Status: 400, Code: "IllegalLocationConstraintException", Message: "The " + cfg.LocationConstraint + " location constraint is incompatible for the region specific endpoint this request was sent to.", BucketName: op.Bucket}
		}
	}
	ok, err := c.s3.createBucket(op.Bucket, c.now())
	if err != nil {
		return internalS3(err)
	}
	if !ok {
		return &s3Error{Status: 409, Code: "BucketAlreadyOwnedByYou", Message: "Your previous request to create the named bucket succeeded and you already own it.", BucketName: op.Bucket}
	}
	w.Header().Set("Location", "/"+op.Bucket)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return nil
}

func (c *Cloud) s3HeadBucket(w http.ResponseWriter, op s3Op) *s3Error {
	if !c.s3.hasBucket(op.Bucket) {
		return noSuchBucket(op.Bucket)
	}
	w.Header().Set("x-amz-bucket-region", c.cfg.Region)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (c *Cloud) s3DeleteBucket(w http.ResponseWriter, op s3Op) *s3Error {
	switch err := c.s3.deleteBucket(op.Bucket); {
	case errors.Is(err, errNoSuchBucket):
		return noSuchBucket(op.Bucket)
	case errors.Is(err, errBucketNotEmpty):
		return &s3Error{Status: 409, Code: "BucketNotEmpty", Message: "The bucket you tried to delete is not empty", BucketName: op.Bucket}
	case err != nil:
		return internalS3(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// s3ListObjectsV2 lists a bucket's keys in UTF-8 order: those after
// start-after or the continuation token, under prefix, with keys that
// hold the delimiter after the prefix rolled up into common prefixes, at
// most max-keys entries (objects and common prefixes together).
func (c *Cloud) s3ListObjectsV2(w http.ResponseWriter, op s3Op) *s3Error {
	q := op.Query
	objs, err := c.s3.keys(op.Bucket)
	if errors.Is(err, errNoSuchBucket) {
		return noSuchBucket(op.Bucket)
	}
	prefix, delim, startAfter, token := q.Get("prefix"), q.Get("delimiter"), q.Get("start-after"), q.Get("continuation-token")
	encURL := false
	switch et := q.Get("encoding-type"); et {
	case "":
	case "url":
		encURL = true
	default:
		return &s3Error{Status: 400, Code: "InvalidArgument", Message: "Invalid Encoding Method specified in Request"}
	}
	maxKeys := 1000
	if s := q.Get("max-keys"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return &s3Error{Status: 400, Code: "InvalidArgument", Message: "Provided max-keys not an integer or within integer range"}
		}
		maxKeys = min(n, 1000)
	}
	after := startAfter
	if q.Has("continuation-token") {
		raw, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || token == "" || !strings.HasPrefix(string(raw), "k:") {
			return &s3Error{Status: 400, Code: "InvalidArgument", Message: "The continuation token provided is incorrect"}
		}
		after = max(after, string(raw[2:]))
	}
	i := sort.Search(len(objs), func(i int) bool { return objs[i].Key > after })
	var contents []s3Object
	var prefixes []string
	truncated, last := false, ""
	for i < len(objs) {
		k := objs[i].Key
		if !strings.HasPrefix(k, prefix) {
			if k > prefix {
				break // sorted: no later key has the prefix
			}
			i++
			continue
		}
		if len(contents)+len(prefixes) >= maxKeys {
			truncated = maxKeys > 0
			break
		}
		if j := strings.Index(k[len(prefix):], delim); delim != "" && j >= 0 {
			cp := k[:len(prefix)+j+len(delim)]
			prefixes = append(prefixes, cp)
			for i < len(objs) && strings.HasPrefix(objs[i].Key, cp) {
				last = objs[i].Key
				i++
			}
			continue
		}
		contents = append(contents, objs[i])
		last = k
		i++
	}
	enc := func(s string) string {
		if encURL {
			return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
		}
		return s
	}
	var x xmlw
	x.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	x.b.WriteString(`<ListBucketResult xmlns="` + s3NS + `">`)
	x.leaf("Name", op.Bucket)
	x.leaf("Prefix", enc(prefix))
	if delim != "" {
		x.leaf("Delimiter", enc(delim))
	}
	x.int("MaxKeys", maxKeys)
	x.int("KeyCount", len(contents)+len(prefixes))
	x.bool("IsTruncated", truncated)
	if q.Has("continuation-token") {
		x.leaf("ContinuationToken", token)
	}
	if truncated {
		x.leaf("NextContinuationToken", base64.RawURLEncoding.EncodeToString([]byte("k:"+last)))
	}
	if startAfter != "" {
		x.leaf("StartAfter", enc(startAfter))
	}
	if encURL {
		x.leaf("EncodingType", "url")
	}
	for _, o := range contents {
		x.open("Contents")
		x.leaf("Key", enc(o.Key))
		x.time("LastModified", o.Modified)
		x.leaf("ETag", o.ETag)
		x.leaf("Size", strconv.FormatInt(o.Size, 10))
		x.leaf("StorageClass", "STANDARD")
		if q.Get("fetch-owner") == "true" {
			x.open("Owner")
			x.leaf("ID", accountID)
			x.leaf("DisplayName", "local")
			x.close("Owner")
		}
		x.close("Contents")
	}
	for _, p := range prefixes {
		x.open("CommonPrefixes")
		x.leaf("Prefix", enc(p))
		x.close("CommonPrefixes")
	}
	x.close("ListBucketResult")
	writeS3XML(w, &x)
	return nil
}

// etagList parses an If-Match or If-None-Match value: "*" or a list of
// (possibly weak) entity tags, compared with their quotes stripped.
func etagMatches(header, etag string) bool {
	want := strings.Trim(etag, `"`)
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		t = strings.TrimPrefix(t, "W/")
		if t == "*" || strings.Trim(t, `"`) == want {
			return true
		}
	}
	return false
}

// putPrecondition is PutObject's conditional-write rule: If-None-Match: *
// needs the key absent (412 otherwise); If-Match needs the key present
// (404 NoSuchKey otherwise) with a matching ETag (412 otherwise).
func putPrecondition(bucket, key string, cur *s3Object, ifMatch, ifNoneMatch string) *s3Error {
	if ifNoneMatch != "" && cur != nil {
		return preconditionFailed("If-None-Match")
	}
	if ifMatch != "" {
		if cur == nil {
			return noSuchKey(bucket, key)
		}
		if !etagMatches(ifMatch, cur.ETag) {
			return preconditionFailed("If-Match")
		}
	}
	return nil
}

func seqOf(o *s3Object) uint64 {
	if o == nil {
		return 0
	}
	return o.seq
}

// s3PutObject stores a body as key's object. A conditional write is
// checked twice: when the request arrives (412, or 404 for If-Match on a
// missing key) and again, atomically with the write, once the body is in;
// if the object changed in between so that the condition no longer holds,
// another write won the race during this upload and the answer is 409
// ConditionalRequestConflict, as S3 documents.
func (c *Cloud) s3PutObject(w http.ResponseWriter, r *http.Request, op s3Op) *s3Error {
	h := r.Header
	if h.Get("x-amz-copy-source") != "" {
		return &s3Error{Status: 501, Code: "NotImplemented", Message: "the local cloud does not serve CopyObject"}
	}
	ifMatch, ifNoneMatch := h.Get("If-Match"), h.Get("If-None-Match")
	if ifNoneMatch != "" && ifNoneMatch != "*" {
		return &s3Error{Status: 501, Code: "NotImplemented", Message: "A header you provided implies functionality that is not implemented", Condition: "If-None-Match"}
	}
	maxSize := c.cfg.S3MaxObjectSize
	payloadHash := h.Get("x-amz-content-sha256")
	chunked := strings.HasPrefix(payloadHash, "STREAMING-") || hasToken(h.Get("Content-Encoding"), "aws-chunked")
	declared := r.ContentLength
	if chunked {
		declared = -1
		if s := h.Get("x-amz-decoded-content-length"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return &s3Error{Status: 400, Code: "InvalidArgument", Message: "x-amz-decoded-content-length is not a length"}
			}
			declared = n
		}
	}
	if declared > maxSize {
		return entityTooLarge(maxSize)
	}
	cur, err := c.s3.head(op.Bucket, op.Key)
	if errors.Is(err, errNoSuchBucket) {
		return noSuchBucket(op.Bucket)
	}
	if e := putPrecondition(op.Bucket, op.Key, cur, ifMatch, ifNoneMatch); e != nil {
		return e
	}
	arrived := seqOf(cur)

	tmp, err := c.s3.tempObject(op.Bucket)
	if err != nil {
		return internalS3(err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var body io.Reader = r.Body
	var cr *chunkedReader
	if chunked {
		cr = newChunkedReader(r.Body)
		body = cr
	}
	md5h := md5.New()
	sinks := []io.Writer{tmp, md5h}
	var sha256h hash.Hash
	if len(payloadHash) == 64 {
		sha256h = sha256.New()
		sinks = append(sinks, sha256h)
	}
	sums := map[string]hash.Hash{}
	trailerNames := strings.ToLower(h.Get("x-amz-trailer"))
	for alg, mk := range s3Checksums {
		if h.Get("x-amz-checksum-"+alg) != "" || hasToken(trailerNames, "x-amz-checksum-"+alg) {
			sums[alg] = mk()
			sinks = append(sinks, sums[alg])
		}
	}
	n, err := io.Copy(io.MultiWriter(sinks...), io.LimitReader(body, maxSize+1))
	switch {
	case errors.Is(err, errChunked):
		return &s3Error{Status: 400, Code: "IncompleteBody", Message: err.Error()}
	case err != nil:
		return &s3Error{Status: 400, Code: "IncompleteBody", Message: "The request body ended early: " + err.Error()}
	case n > maxSize:
		return entityTooLarge(maxSize)
	case declared >= 0 && n != declared:
		return &s3Error{Status: 400, Code: "IncompleteBody", Message: "You did not provide the number of bytes specified by the Content-Length HTTP header"}
	}
	if cm := h.Get("Content-MD5"); cm != "" {
		want, err := base64.StdEncoding.DecodeString(cm)
		if err != nil || len(want) != md5.Size {
			return &s3Error{Status: 400, Code: "InvalidDigest", Message: "The Content-MD5 you specified was invalid."}
		}
		if string(want) != string(md5h.Sum(nil)) {
			return &s3Error{Status: 400, Code: "BadDigest", Message: "The Content-MD5 you specified did not match what we received."}
		}
	}
	if sha256h != nil && !strings.EqualFold(payloadHash, hex.EncodeToString(sha256h.Sum(nil))) {
		return &s3Error{Status: 400, Code: "XAmzContentSHA256Mismatch", Message: "The provided 'x-amz-content-sha256' header does not match what was computed."}
	}
	for alg, sum := range sums {
		want := h.Get("x-amz-checksum-" + alg)
		if cr != nil && cr.trailers["x-amz-checksum-"+alg] != "" {
			want = cr.trailers["x-amz-checksum-"+alg]
		}
		if want == "" {
			return &s3Error{Status: 400, Code: "InvalidRequest", Message: "The x-amz-trailer header names x-amz-checksum-" + alg + " but the body has no such trailer"}
		}
		got := base64Sum(sum)
		if want != got {
			return &s3Error{Status: 400, Code: "BadDigest", Message: "The " + checksumName(alg) + " you specified did not match the calculated checksum."}
		}
		w.Header().Set("x-amz-checksum-"+alg, got)
	}
	o := &s3Object{
		Key:          op.Key,
		ETag:         `"` + hex.EncodeToString(md5h.Sum(nil)) + `"`,
		Size:         n,
		ContentType:  h.Get("Content-Type"),
		Encoding:     dropToken(h.Get("Content-Encoding"), "aws-chunked"),
		Disposition:  h.Get("Content-Disposition"),
		CacheControl: h.Get("Cache-Control"),
		Language:     h.Get("Content-Language"),
		Modified:     c.now().UTC().Truncate(time.Millisecond),
	}
	for name, vs := range h {
		if ln := strings.ToLower(name); strings.HasPrefix(ln, "x-amz-meta-") && len(vs) > 0 {
			if o.Meta == nil {
				o.Meta = map[string]string{}
			}
			o.Meta[strings.TrimPrefix(ln, "x-amz-meta-")] = strings.Join(vs, ",")
		}
	}
	err = writeS3Footer(tmp, o)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return internalS3(fmt.Errorf("put object %s/%s: %w", op.Bucket, op.Key, err))
	}
	committed = true
	err = c.s3.commit(op.Bucket, o, tmp.Name(), func(cur *s3Object) error {
		if e := putPrecondition(op.Bucket, op.Key, cur, ifMatch, ifNoneMatch); e != nil {
			if seqOf(cur) != arrived {
				return conditionalConflict()
			}
			return e
		}
		return nil
	})
	if e := storeError(err, op.Bucket); e != nil {
		return e
	}
	w.Header().Set("ETag", o.ETag)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return nil
}

func entityTooLarge(maxSize int64) *s3Error {
	return &s3Error{Status: 400, Code: "EntityTooLarge", Message: fmt.Sprintf("Your proposed upload exceeds the maximum allowed object size (%d bytes on this local cloud).", maxSize)}
}

// hasToken says whether a comma-separated header value holds tok.
func hasToken(v, tok string) bool {
	for _, t := range strings.Split(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// dropToken removes tok from a comma-separated header value.
func dropToken(v, tok string) string {
	var keep []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, tok) {
			keep = append(keep, t)
		}
	}
	return strings.Join(keep, ",")
}

// readPrecondition evaluates GetObject's and HeadObject's conditions in
// RFC 9110's order, as S3 does: If-Match (412), else If-Unmodified-Since
// (412); then If-None-Match (304), else If-Modified-Since (304). ok is
// false with the status to answer.
func readPrecondition(h http.Header, o *s3Object) (status int, cond string) {
	lm := o.Modified.Truncate(time.Second)
	if im := h.Get("If-Match"); im != "" {
		if !etagMatches(im, o.ETag) {
			return http.StatusPreconditionFailed, "If-Match"
		}
	} else if t, err := http.ParseTime(h.Get("If-Unmodified-Since")); err == nil && lm.After(t) {
		return http.StatusPreconditionFailed, "If-Unmodified-Since"
	}
	if inm := h.Get("If-None-Match"); inm != "" {
		if etagMatches(inm, o.ETag) {
			return http.StatusNotModified, ""
		}
	} else if t, err := http.ParseTime(h.Get("If-Modified-Since")); err == nil && !lm.After(t) {
		return http.StatusNotModified, ""
	}
	return 0, ""
}

// s3GetObject answers GetObject and HeadObject, with conditions and a
// single byte range.
func (c *Cloud) s3GetObject(w http.ResponseWriter, r *http.Request, op s3Op) *s3Error {
	o, f, err := c.s3.open(op.Bucket, op.Key)
	switch {
	case errors.Is(err, errNoSuchBucket):
		return noSuchBucket(op.Bucket)
	case err != nil:
		return internalS3(err)
	case o == nil:
		return noSuchKey(op.Bucket, op.Key)
	}
	defer f.Close()
	hd := w.Header()
	hd.Set("ETag", o.ETag)
	hd.Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
	switch status, cond := readPrecondition(r.Header, o); status {
	case http.StatusPreconditionFailed:
		return preconditionFailed(cond)
	case http.StatusNotModified:
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	ctype := o.ContentType
	if ctype == "" {
		ctype = "binary/octet-stream"
	}
	hd.Set("Content-Type", ctype)
	set := func(name, v string) {
		if v != "" {
			hd.Set(name, v)
		}
	}
	set("Content-Encoding", o.Encoding)
	set("Content-Disposition", o.Disposition)
	set("Cache-Control", o.CacheControl)
	set("Content-Language", o.Language)
	for k, v := range o.Meta {
		hd.Set("x-amz-meta-"+k, v)
	}
	q := op.Query
	for param, header := range map[string]string{
		"response-content-type": "Content-Type", "response-content-encoding": "Content-Encoding",
		"response-content-disposition": "Content-Disposition", "response-cache-control": "Cache-Control",
		"response-content-language": "Content-Language", "response-expires": "Expires",
	} {
		set(header, q.Get(param))
	}
	hd.Set("Accept-Ranges", "bytes")
	start, length := int64(0), o.Size
	status := http.StatusOK
	if rs := r.Header.Get("Range"); rs != "" {
		s, l, ok, satisfiable := parseRange(rs, o.Size)
		if ok && !satisfiable {
			hd.Del("Content-Type")
			return &s3Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: "InvalidRange", Message: "The requested range is not satisfiable"}
		}
		if ok {
			start, length, status = s, l, http.StatusPartialContent
			hd.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", s, s+l-1, o.Size))
		}
	}
	hd.Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(w, io.NewSectionReader(f, start, length)); err != nil {
		c.log.Debug("s3 get object: client went away", "bucket", op.Bucket, "err", err)
	}
	return nil
}

// parseRange parses one "bytes=first-last", "bytes=first-" or
// "bytes=-suffix" range; ok false means the header is ignored (S3 serves
// the whole object for a range it cannot parse, and for several ranges).
func parseRange(h string, size int64) (start, length int64, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false, false
		}
		if n == 0 || size == 0 {
			return 0, 0, true, false
		}
		n = min(n, size)
		return size - n, n, true, true
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return 0, 0, false, false
	}
	last := size - 1
	if b != "" {
		if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
			return 0, 0, false, false
		}
		last = min(last, size-1)
	}
	if first >= size {
		return 0, 0, true, false
	}
	return first, last - first + 1, true, true
}

// s3DeleteObject removes key's object; deleting a missing key succeeds, as
// on S3, unless If-Match asks for it to exist.
func (c *Cloud) s3DeleteObject(w http.ResponseWriter, r *http.Request, op s3Op) *s3Error {
	ifMatch := r.Header.Get("If-Match")
	err := c.s3.remove(op.Bucket, op.Key, func(cur *s3Object) error {
		if ifMatch == "" {
			return nil
		}
		if cur == nil {
			return noSuchKey(op.Bucket, op.Key)
		}
		if !etagMatches(ifMatch, cur.ETag) {
			return preconditionFailed("If-Match")
		}
		return nil
	})
	if e := storeError(err, op.Bucket); e != nil {
		return e
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// storeError is the answer to an s3Store change's error: a condition's own
// S3 error as is, NoSuchBucket, or InternalError; nil for nil.
func storeError(err error, bucket string) *s3Error {
	var se *s3Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return se
	case errors.Is(err, errNoSuchBucket):
		return noSuchBucket(bucket)
	}
	return internalS3(err)
}
