// Package nodeapi is the wire contract of a ws node's admin API: the
// requests an operator or the rollout engine sends to a node and the
// answers it gets. The node (package server), the engine (package rollout),
// the local cloud's simulated nodes and the test harness all use these
// types, so a field added here reaches every side at once.
//
// # Compatibility
//
// A fleet in the middle of a change runs two builds of the node, and the
// engine may be newer than either, so the contract is versioned:
//
//   - Version is one integer. It grows by one whenever a request gains a
//     field or an endpoint is added; nothing is ever removed or renamed
//     within this package's major version.
//   - A node reports the version it speaks in Status.APIVersion. A node
//     from before versioning reports nothing; it speaks version 1.
//   - A node refuses a request with a field it does not know (400): an
//     operator's typo must not drain a node with defaults. So the sender,
//     not the node, is the one that adapts: before it sends a request or a
//     field introduced in version N it reads the node's status and checks
//     Supports(status, N); an older node gets the older request or a clear
//     error, never a half-understood one.
//   - Answers may gain fields at any version; readers ignore fields they do
//     not know.
package nodeapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Version is the admin API version this build speaks.
//
//	1: GET /admin/status, POST /admin/drain (window, max_rate, deadline).
//	2: POST /admin/shed (id, count, window, max_rate): a partial drain;
//	   POST /admin/cordon (cordoned): readiness off or on while the node
//	   keeps serving; Status gains cordoned, shed and received.
//
// Adding a request means: its path here, its type with a Since method
// that returns the version it came in (and, for a field added later, the
// version of the newest field it sets), a Client method that sends it
// with post (which refuses it client-side for an older node), the node's
// handler, and one more line above.
const Version = 2

// Paths of the admin API on the node's listener. Every one needs the admin
// bearer token.
const (
	PathStatus = "/admin/status"
	PathDrain  = "/admin/drain"
	PathShed   = "/admin/shed"   // since version 2
	PathCordon = "/admin/cordon" // since version 2
)

// State is where a node is in its life.
type State string

// The states a node reports.
const (
	StateReady    State = "ready"    // takes new clients
	StateDraining State = "draining" // left the load balancer, releasing its clients
	StateDrained  State = "drained"  // released everyone; about to stop
)

// Status is the answer of GET /admin/status.
type Status struct {
	// APIVersion is the admin API version the node speaks; 0 means a
	// node from before versioning, which speaks version 1.
	APIVersion    int         `json:"api_version,omitempty"`
	Node          string      `json:"node"`
	Version       string      `json:"version"` // the node's build
	Image         string      `json:"image"`
	State         State       `json:"state"`
	Connections   int         `json:"connections"`
	Sessions      int         `json:"sessions"`
	Subscriptions int         `json:"subscriptions"`
	Drain         DrainStatus `json:"drain"`
	// Cordoned (version 2): the node's readiness fails on purpose
	// (POST /admin/cordon) while it serves every client it has and any
	// that still reach it. State stays what it is.
	Cordoned bool `json:"cordoned"`
	// Shed (version 2) is the progress of the node's sheds since it
	// started.
	Shed ShedStatus `json:"shed"`
	// Received (version 2) counts the sessions this node took over from
	// another node since it started (see docs/server.md).
	Received int `json:"received"`
}

// ShedStatus is the progress of a node's sheds (POST /admin/shed) since it
// started: Requested is what they were to release, summed after each was
// clamped to the clients the node held; Released is how many of those the
// node released; Running is true while one still releases. A shed
// superseded by a drain, or whose clients left by themselves, ends with
// Released below Requested.
type ShedStatus struct {
	Requested int  `json:"requested"`
	Released  int  `json:"released"`
	Running   bool `json:"running"`
}

// SpeaksVersion is the admin API version the node speaks.
func (s Status) SpeaksVersion() int {
	if s.APIVersion <= 0 {
		return 1
	}
	return s.APIVersion
}

// Supports reports whether the node understands requests introduced in
// version v.
func (s Status) Supports(v int) bool { return s.SpeaksVersion() >= v }

// Require is nil when the node understands requests introduced in version
// v, and otherwise a *VersionError naming the node and request (such as
// "POST /admin/drain").
func (s Status) Require(v int, request string) error {
	if s.Supports(v) {
		return nil
	}
	return &VersionError{Node: s.Node, Speaks: s.SpeaksVersion(), Needs: v, Request: request}
}

// VersionError is a request refused before it was sent: the node speaks
// an older admin API version than the request needs. The operator's fix is
// to upgrade the node first, or to leave the newer option out.
type VersionError struct {
	Node    string // the node's name as it reports it
	Speaks  int    // the admin API version the node speaks
	Needs   int    // the version the request needs
	Request string // method and path
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("node %s speaks admin API version %d; %s needs version %d", e.Node, e.Speaks, e.Request, e.Needs)
}

// DrainStatus is a drain's progress.
type DrainStatus struct {
	Remaining int        `json:"remaining"`
	Released  int        `json:"released"`
	StartedAt *time.Time `json:"started_at"`
}

// DrainRequest is the body of POST /admin/drain (since version 1). Every
// field is optional: an empty body, or a field left out, takes the node's
// default. A duration given as "0s" is zero, not the default: the engine
// asks for an unpaced drain that way.
type DrainRequest struct {
	// Window spreads the releases over this long, with jitter.
	Window *Duration `json:"window,omitempty"`
	// MaxRate caps releases per second on this node; 0 is the default.
	MaxRate float64 `json:"max_rate,omitempty"`
	// Deadline is when the node closes whatever is left.
	Deadline *Duration `json:"deadline,omitempty"`
}

// Since is the admin API version the request needs: the version of the
// newest field it sets. Every drain request so far is version 1.
func (r DrainRequest) Since() int { return 1 }

// ShedRequest is the body of POST /admin/shed (since version 2): release
// Count of the node's clients, paced over Window with jitter and never
// faster than MaxRate per second, with the hand-over a drain gives each
// (its session saved for the node it reconnects to, which replays what it
// missed), while the node keeps serving the others and stays ready.
//
// Which clients go: those that never moved (they handshook on the node)
// before those the node received from another node, and within each the
// newest first, so that a client is moved as few times as possible.
//
// Count is required (0 to MaxShedCount; 0 releases no one). Window and
// MaxRate are optional and take the node's drain defaults when left out;
// a window of "0s" is zero, a max_rate of 0 the default. ID, optional (at
// most MaxShedIDLength bytes), makes the request idempotent: the repeat of
// a running or finished shed's ID changes nothing and is answered with
// that shed's result. A shed with a new ID while one runs adds to it: its
// releases follow those already due, paced by its own window and rate. A
// drain supersedes a running shed; a draining node refuses a shed (409).
type ShedRequest struct {
	ID      string    `json:"id,omitempty"`
	Count   int       `json:"count"`
	Window  *Duration `json:"window,omitempty"`
	MaxRate float64   `json:"max_rate,omitempty"`
}

// Since is the admin API version the request needs.
func (r ShedRequest) Since() int { return 2 }

// ShedResult is the answer of POST /admin/shed (202): the shed's ID as
// given, the Count asked, how many clients it will release (Releasing:
// Count clamped to the clients the node holds that no earlier shed is
// releasing) and the pacing the node applies (its defaults filled in).
type ShedResult struct {
	ID        string   `json:"id,omitempty"`
	Count     int      `json:"count"`
	Releasing int      `json:"releasing"`
	Window    Duration `json:"window"`
	MaxRate   float64  `json:"max_rate"`
}

// Bounds of a shed request.
const (
	MaxShedCount    = 1_000_000
	MaxShedWindow   = time.Hour
	MaxShedRate     = 100_000
	MaxShedIDLength = 128
)

// DecodeShedRequest reads a POST /admin/shed body strictly, as
// DecodeDrainRequest does; count is required, so an empty body is an
// error.
func DecodeShedRequest(b []byte) (ShedRequest, error) {
	var r ShedRequest
	if len(strings.TrimSpace(string(b))) == 0 {
		return r, fmt.Errorf("%w: count is required: want 0 to %d", ErrBadRequest, MaxShedCount)
	}
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if !hasField(b, "count") {
		return r, fmt.Errorf("%w: count is required: want 0 to %d", ErrBadRequest, MaxShedCount)
	}
	return r, r.Validate()
}

// Validate checks every field against its allowed range.
func (r ShedRequest) Validate() error {
	var errs []error
	if len(r.ID) > MaxShedIDLength {
		errs = append(errs, fmt.Errorf("%w: id of %d bytes: want at most %d", ErrBadRequest, len(r.ID), MaxShedIDLength))
	}
	if r.Count < 0 || r.Count > MaxShedCount {
		errs = append(errs, fmt.Errorf("%w: count %d: want 0 to %d", ErrBadRequest, r.Count, MaxShedCount))
	}
	if r.Window != nil && (r.Window.D() < 0 || r.Window.D() > MaxShedWindow) {
		errs = append(errs, fmt.Errorf("%w: window %s: want 0 to %s", ErrBadRequest, r.Window.D(), MaxShedWindow))
	}
	if r.MaxRate < 0 || r.MaxRate > MaxShedRate {
		errs = append(errs, fmt.Errorf("%w: max_rate %g: want 0 to %d per second", ErrBadRequest, r.MaxRate, MaxShedRate))
	}
	return errors.Join(errs...)
}

// CordonRequest is the body of POST /admin/cordon (since version 2).
// Cordoned is required: true fails the node's readiness (/readyz answers
// 503 "not ready: cordoned") so the load balancer sends it no new
// connection, while it serves every client it has and accepts what still
// reaches it; false restores readiness (never that of a draining node).
type CordonRequest struct {
	Cordoned bool `json:"cordoned"`
}

// Since is the admin API version the request needs.
func (r CordonRequest) Since() int { return 2 }

// DecodeCordonRequest reads a POST /admin/cordon body strictly; the
// cordoned field is required, so an empty body, which would otherwise
// uncordon, is an error.
func DecodeCordonRequest(b []byte) (CordonRequest, error) {
	var r CordonRequest
	if len(strings.TrimSpace(string(b))) == 0 {
		return r, fmt.Errorf("%w: cordoned is required: want true or false", ErrBadRequest)
	}
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if !hasField(b, "cordoned") {
		return r, fmt.Errorf("%w: cordoned is required: want true or false", ErrBadRequest)
	}
	return r, nil
}

// hasField reports whether b, a JSON object decodeStrict accepted, names
// field at its top level.
func hasField(b []byte, field string) bool {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return false
	}
	_, ok := m[field]
	return ok
}

// Dur is d as a request field.
func Dur(d time.Duration) *Duration { v := Duration(d); return &v }

// Bounds of a drain request: no caller means a drain of more than a day or
// a rate beyond what one node could serve.
const (
	MaxDrainDuration = 24 * time.Hour
	MaxDrainRate     = 1e6
)

// ErrBadRequest is what every refusal of a malformed request wraps.
var ErrBadRequest = errors.New("bad admin request")

// DecodeDrainRequest reads a POST /admin/drain body strictly: unknown
// fields, trailing data, negative or out-of-range values are errors that
// name the field. An empty body is the zero request.
func DecodeDrainRequest(b []byte) (DrainRequest, error) {
	var r DrainRequest
	if len(strings.TrimSpace(string(b))) == 0 {
		return r, nil
	}
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	return r, r.Validate()
}

// Validate checks every field against its allowed range.
func (r DrainRequest) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    *Duration
	}{{"window", r.Window}, {"deadline", r.Deadline}} {
		if d.v != nil && (d.v.D() < 0 || d.v.D() > MaxDrainDuration) {
			errs = append(errs, fmt.Errorf("%w: %s %s: want 0 to %s", ErrBadRequest, d.name, d.v.D(), MaxDrainDuration))
		}
	}
	if r.MaxRate < 0 || r.MaxRate > MaxDrainRate {
		errs = append(errs, fmt.Errorf("%w: max_rate %g: want 0 to %g per second", ErrBadRequest, r.MaxRate, float64(MaxDrainRate)))
	}
	return errors.Join(errs...)
}

// decodeStrict decodes one JSON object into v, a pointer to a struct,
// refusing another kind of value, unknown fields and anything after the
// object. encoding/json alone would take null as an empty request, match
// field names in any case and let the last of two equal fields win: each
// of these is a request the node does not fully understand.
func decodeStrict(b []byte, v any) error {
	if err := exactFields(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the JSON value", ErrBadRequest)
	}
	if _, err := dec.Token(); err == nil {
		return fmt.Errorf("%w: data after the JSON value", ErrBadRequest)
	}
	return nil
}

// Duration is a time.Duration that travels as a Go duration string
// ("30s"), the form operators type with curl.
type Duration time.Duration

// D is the duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string; a number is refused, since
// whether it meant seconds or nanoseconds cannot be told.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// exactFields checks that b is a JSON object whose every name is, exactly
// and once, the json name of a field of the struct v points to. Syntax
// errors are left to the decoder, which reports them with their offset.
func exactFields(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if tok, err := dec.Token(); err != nil {
		return nil
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("want a JSON object")
	}
	known := jsonNames(reflect.TypeOf(v).Elem())
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := tok.(string)
		switch {
		case !known[name]:
			return fmt.Errorf("json: unknown field %q", name)
		case seen[name]:
			return fmt.Errorf("json: field %q given twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// jsonNames is the set of json names of struct type t's fields.
func jsonNames(t reflect.Type) map[string]bool {
	names := map[string]bool{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names[name] = true
	}
	return names
}
