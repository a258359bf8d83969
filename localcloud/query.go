package localcloud

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The AWS Query protocol, as EC2, Auto Scaling and ELBv2 speak it: a form
// (POST body or URL query) with Action and Version, nested values spelled
// as dotted keys (Tags.member.1.Key for autoscaling and elbv2, flattened
// Tag.1.Key for EC2), answered with an XML document. EC2 and the other two
// differ in their envelopes, list element names and error documents, so
// each response is written by a writer that knows its service.

const (
	svcEC2 = "ec2"
	svcASG = "autoscaling"
	svcELB = "elasticloadbalancing"

	ec2Version = "2016-11-15"
	asgVersion = "2011-01-01"
	elbVersion = "2015-12-01"

	ec2NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
	asgNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
	elbNS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"

	// maxBody bounds a request body; the largest real request (a launch
	// template with user data of 16 KiB, base64) is far below it.
	maxBody = 1 << 20
	// maxListIndex bounds N in Foo.member.N so that a hostile index cannot
	// make a parser allocate; AWS's largest lists are 1000 long.
	maxListIndex = 10000
)

// apiError is an AWS error document: Code is the machine-readable name
// (ValidationError, InvalidInstanceID.NotFound), Message the human one.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(code, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

func validationf(format string, args ...any) *apiError {
	return errf("ValidationError", format, args...)
}

// request is one parsed API call.
type request struct {
	Service   string // svcEC2, svcASG or svcELB
	Action    string
	AccessKey string // from the SigV4 credential, recorded, never checked
	Params    params
}

// params are a request's form values, first value of each key.
type params map[string]string

// parseRequest reads an HTTP request as an AWS Query call and decides which
// service it is for: the SigV4 credential scope names the service (the
// SDKs and the CLI always sign); without one, the Version, then the action
// name decides.
func parseRequest(r *http.Request) (*request, *apiError) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, errf("MalformedQueryString", "read request body: %v", err)
	}
	if len(body) > maxBody {
		return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Code: "RequestEntityTooLarge", Message: "request body exceeds 1 MiB"}
	}
	return parseQuery(r.URL.RawQuery, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), body)
}

// parseQuery is parseRequest without net/http, so that it can be fuzzed.
func parseQuery(rawQuery, contentType, authorization string, body []byte) (*request, *apiError) {
	p := params{}
	add := func(s string) *apiError {
		v, err := url.ParseQuery(s)
		if err != nil {
			return errf("MalformedQueryString", "malformed form: %v", err)
		}
		for k, vs := range v {
			if len(vs) > 0 {
				if _, dup := p[k]; !dup {
					p[k] = vs[0]
				}
			}
		}
		return nil
	}
	if e := add(rawQuery); e != nil {
		return nil, e
	}
	if len(body) > 0 && (contentType == "" || strings.HasPrefix(strings.ToLower(contentType), "application/x-www-form-urlencoded")) {
		if e := add(string(body)); e != nil {
			return nil, e
		}
	}
	req := &request{Action: p["Action"], Params: p}
	if req.Action == "" {
		return nil, errf("MissingAction", "the request has no Action parameter")
	}
	req.AccessKey, req.Service = parseCredential(authorization)
	switch req.Service {
	case svcEC2, svcASG, svcELB:
	default:
		req.Service = ""
		switch p["Version"] {
		case ec2Version:
			req.Service = svcEC2
		case asgVersion:
			req.Service = svcASG
		case elbVersion:
			req.Service = svcELB
		default:
			req.Service = serviceOfAction(req.Action)
		}
	}
	if req.Service == "" {
		return nil, errf("InvalidAction", "the action %q is not valid for this endpoint", req.Action)
	}
	if e := checkListIndices(req.Service, p); e != nil {
		return nil, e
	}
	return req, nil
}

// checkListIndices refuses a list whose members are not numbered 1, 2, …
// N without a gap. The Query protocol numbers list members from 1
// (Names.member.1 for autoscaling and elbv2, the flattened InstanceId.1
// for EC2); a member the parser would skip (member.0, member.01, a gap)
// would silently shorten the list, and an emptied list is no filter:
// DescribeAutoScalingGroups with AutoScalingGroupNames.member.0 would
// answer every group. AWS refuses such a request with a validation error
// (ValidationError for autoscaling and elbv2, InvalidParameterValue for
// EC2) naming the parameter, so the local cloud does too.
func checkListIndices(service string, p params) *apiError {
	bad := func(format string, args ...any) *apiError {
		msg := "1 validation error detected: " + fmt.Sprintf(format, args...)
		if service == svcEC2 {
			return errf("InvalidParameterValue", "%s", msg)
		}
		return validationf("%s", msg)
	}
	lists := map[string]map[int]bool{} // list prefix -> member numbers
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first bad key, the same on every run
	for _, k := range keys {
		segs := strings.Split(k, ".")
		for i := 1; i < len(segs); i++ {
			if !isListIndex(service, segs, i) {
				continue
			}
			prefix := strings.Join(segs[:i], ".")
			n, err := strconv.Atoi(segs[i])
			if err != nil || n < 1 || n > maxListIndex || strconv.Itoa(n) != segs[i] {
				return bad("Value '%s' at '%s' failed to satisfy constraint: list members are numbered 1 to %d", segs[i], strings.Join(segs[:i+1], "."), maxListIndex)
			}
			if lists[prefix] == nil {
				lists[prefix] = map[int]bool{}
			}
			lists[prefix][n] = true
		}
	}
	prefixes := make([]string, 0, len(lists))
	for prefix := range lists {
		prefixes = append(prefixes, prefix)
	}
	sort.Strings(prefixes)
	for _, prefix := range prefixes {
		ns := lists[prefix]
		for n := 1; n <= len(ns); n++ {
			if !ns[n] {
				return bad("Value null at '%s.%d' failed to satisfy constraint: Member must not be null", prefix, n)
			}
		}
	}
	return nil
}

// isListIndex reports whether segment i of a dotted key numbers a list
// member: the segment after "member" (or a map's "entry") in autoscaling
// and elbv2, any segment that starts with a digit or a sign in EC2's
// flattened lists (Filter.1.Value.2).
func isListIndex(service string, segs []string, i int) bool {
	if service != svcEC2 {
		return segs[i-1] == "member" || segs[i-1] == "entry"
	}
	s := segs[i]
	return s != "" && (s[0] >= '0' && s[0] <= '9' || s[0] == '-' || s[0] == '+')
}

// parseCredential returns the access key and service name of a SigV4
// Authorization header: "AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, …".
func parseCredential(h string) (accessKey, service string) {
	i := strings.Index(h, "Credential=")
	if i < 0 {
		return "", ""
	}
	cred := h[i+len("Credential="):]
	if j := strings.IndexAny(cred, ", "); j >= 0 {
		cred = cred[:j]
	}
	parts := strings.Split(cred, "/")
	if len(parts) != 5 {
		return "", ""
	}
	return parts[0], parts[3]
}

// serviceOfAction is the fallback route for unsigned requests: the action
// name when it belongs to exactly one service.
func serviceOfAction(action string) string {
	var found string
	for _, svc := range []string{svcEC2, svcASG, svcELB} {
		if _, ok := actions[svc][action]; ok {
			if found != "" {
				return "" // ambiguous, e.g. DescribeTags
			}
			found = svc
		}
	}
	return found
}

// str returns a parameter's value, "" when absent.
func (p params) str(k string) string { return p[k] }

// required returns a parameter or the MissingParameter error AWS gives.
func (p params) required(k string) (string, *apiError) {
	v, ok := p[k]
	if !ok || v == "" {
		return "", errf("MissingParameter", "the request must contain the parameter %s", k)
	}
	return v, nil
}

// requiredInt is intOpt for a parameter the action cannot do without.
func (p params) requiredInt(k string) (int, *apiError) {
	v, set, e := p.intOpt(k)
	if e == nil && !set {
		e = errf("MissingParameter", "The request must contain the parameter %s", k)
	}
	return v, e
}

// requiredBool is boolOpt for a parameter the action cannot do without.
func (p params) requiredBool(k string) (bool, *apiError) {
	v, set, e := p.boolOpt(k)
	if e == nil && !set {
		e = errf("MissingParameter", "The request must contain the parameter %s", k)
	}
	return v, e
}

// requiredStructs is structs for a list the action cannot do without;
// name is the list's name in the error.
func (p params) requiredStructs(prefix, name string) ([]params, *apiError) {
	out := p.structs(prefix)
	if len(out) == 0 {
		return nil, errf("MissingParameter", "The request must contain the parameter %s", name)
	}
	return out, nil
}

// intOpt parses an optional integer parameter.
func (p params) intOpt(k string) (v int, set bool, e *apiError) {
	s, ok := p[k]
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < -1<<31 || n > 1<<31-1 {
		return 0, false, validationf("value %q at '%s' is not a valid integer", s, k)
	}
	return n, true, nil
}

// boolOpt parses an optional boolean parameter.
func (p params) boolOpt(k string) (v, set bool, e *apiError) {
	s, ok := p[k]
	if !ok {
		return false, false, nil
	}
	switch strings.ToLower(s) {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, false, validationf("value %q at '%s' is not a valid boolean", s, k)
}

// indices returns the sorted N of every key prefix.N[.…].
func (p params) indices(prefix string) []int {
	seen := map[int]bool{}
	for k := range p {
		if !strings.HasPrefix(k, prefix+".") {
			continue
		}
		rest := k[len(prefix)+1:]
		if j := strings.IndexByte(rest, '.'); j >= 0 {
			rest = rest[:j]
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || n > maxListIndex {
			continue
		}
		seen[n] = true
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// list returns the scalar list prefix.1, prefix.2, …; prefix is "Ids.member"
// for autoscaling and elbv2 and "InstanceId" for EC2.
func (p params) list(prefix string) []string {
	var out []string
	for _, n := range p.indices(prefix) {
		if v, ok := p[prefix+"."+strconv.Itoa(n)]; ok {
			out = append(out, v)
		}
	}
	return out
}

// structs returns the list of structures prefix.N.*, each as its own params
// with the prefix removed.
func (p params) structs(prefix string) []params {
	var out []params
	for _, n := range p.indices(prefix) {
		out = append(out, p.sub(prefix+"."+strconv.Itoa(n)))
	}
	return out
}

// sub returns the members of structure prefix.*.
func (p params) sub(prefix string) params {
	s := params{}
	for k, v := range p {
		if strings.HasPrefix(k, prefix+".") {
			s[k[len(prefix)+1:]] = v
		}
	}
	return s
}

// has reports whether any key of structure prefix is present.
func (p params) has(prefix string) bool {
	for k := range p {
		if k == prefix || strings.HasPrefix(k, prefix+".") {
			return true
		}
	}
	return false
}

// xmlw writes an XML document element by element; the response shapes are
// many and shallow, and writing them inline keeps each next to its action.
type xmlw struct {
	b bytes.Buffer
}

func (x *xmlw) open(name string)  { x.b.WriteString("<" + name + ">") }
func (x *xmlw) close(name string) { x.b.WriteString("</" + name + ">") }

// leaf writes <name>v</name>.
func (x *xmlw) leaf(name, v string) {
	x.open(name)
	x.text(v)
	x.close(name)
}

// opt writes a leaf only when v is not empty.
func (x *xmlw) opt(name, v string) {
	if v != "" {
		x.leaf(name, v)
	}
}

func (x *xmlw) int(name string, v int)   { x.leaf(name, strconv.Itoa(v)) }
func (x *xmlw) bool(name string, v bool) { x.leaf(name, strconv.FormatBool(v)) }
func (x *xmlw) time(name string, t time.Time) {
	x.leaf(name, t.UTC().Format("2006-01-02T15:04:05.000Z"))
}

func (x *xmlw) text(s string) {
	for _, r := range s {
		switch r {
		case '<':
			x.b.WriteString("&lt;")
		case '>':
			x.b.WriteString("&gt;")
		case '&':
			x.b.WriteString("&amp;")
		case '"':
			x.b.WriteString("&quot;")
		case '\'':
			x.b.WriteString("&apos;")
		case '\r':
			x.b.WriteString("&#xD;")
		default:
			if r < 0x20 && r != '\n' && r != '\t' || r == 0xFFFE || r == 0xFFFF {
				x.b.WriteString("\uFFFD")
				continue
			}
			x.b.WriteRune(r)
		}
	}
}

// list writes <name><item>…</item>…</name>, item being "member" for the
// query services and "item" for EC2.
func (x *xmlw) list(name, item string, n int, each func(i int)) {
	x.open(name)
	for i := 0; i < n; i++ {
		x.open(item)
		each(i)
		x.close(item)
	}
	x.close(name)
}

// strings writes a list of scalars.
func (x *xmlw) strings(name, item string, vs []string) {
	x.list(name, item, len(vs), func(i int) { x.text(vs[i]) })
}

// writeResponse wraps body in the service's envelope.
func writeResponse(w http.ResponseWriter, svc, action, requestID string, body *xmlw) {
	var out bytes.Buffer
	out.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	switch svc {
	case svcEC2:
		fmt.Fprintf(&out, `<%sResponse xmlns="%s"><requestId>%s</requestId>`, action, ec2NS, requestID)
		out.Write(body.b.Bytes())
		fmt.Fprintf(&out, `</%sResponse>`, action)
	default:
		ns := asgNS
		if svc == svcELB {
			ns = elbNS
		}
		fmt.Fprintf(&out, `<%sResponse xmlns="%s">`, action, ns)
		// Always a Result element, empty or not: the SDKs fail to read an
		// output shape (even an empty one) that has no Result.
		fmt.Fprintf(&out, `<%sResult>`, action)
		out.Write(body.b.Bytes())
		fmt.Fprintf(&out, `</%sResult>`, action)
		fmt.Fprintf(&out, `<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`, requestID, action)
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", requestID)
	w.WriteHeader(http.StatusOK)
	w.Write(out.Bytes())
}

// writeError writes the service's error document: EC2's
// <Response><Errors><Error>, the others' <ErrorResponse>.
func writeError(w http.ResponseWriter, svc, requestID string, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{Status: http.StatusInternalServerError, Code: "InternalFailure", Message: err.Error()}
	}
	var x xmlw
	x.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	if svc == svcEC2 {
		x.open("Response")
		x.open("Errors")
		x.open("Error")
		x.leaf("Code", ae.Code)
		x.leaf("Message", ae.Message)
		x.close("Error")
		x.close("Errors")
		x.leaf("RequestID", requestID)
		x.close("Response")
	} else {
		ns := asgNS
		if svc == svcELB {
			ns = elbNS
		}
		fmt.Fprintf(&x.b, `<ErrorResponse xmlns="%s">`, ns)
		x.open("Error")
		kind := "Sender"
		if ae.Status >= 500 {
			kind = "Receiver"
		}
		x.leaf("Type", kind)
		x.leaf("Code", ae.Code)
		x.leaf("Message", ae.Message)
		x.close("Error")
		x.leaf("RequestId", requestID)
		x.close("ErrorResponse")
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", requestID)
	w.WriteHeader(ae.Status)
	w.Write(x.b.Bytes())
}
