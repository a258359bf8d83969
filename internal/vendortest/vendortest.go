// Package vendortest runs stand-ins for the hosted services wsfleet's
// checks and effects talk to (PagerDuty, Sentry, Datadog, GitLab, Slack),
// on loopback, for tests. Every request a stand-in receives is checked
// against the vendor's published API description (trimmed copies in
// testdata/, with each vendor's licence) with kin-openapi's request
// validator: a request the description does not allow fails the test.
// Every answer a stand-in gives is checked against the description too,
// so that the tests' data has the documented shapes. A stand-in can
// answer with a rate limit (429 with Retry-After), a server error, or not
// at all.
package vendortest

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"go.yaml.in/yaml/v4"
)

//go:embed testdata
var testdata embed.FS

// Request is one request a stand-in received, without its credentials.
type Request struct {
	Method, Path, Query string
	Body                string
}

// Server is the part every stand-in shares: the HTTP server, the
// validator, the faults and the record of requests.
type Server struct {
	*httptest.Server
	t      testing.TB
	vendor string
	router routers.Router
	// auth checks a request's credentials for a security scheme by name
	// (nil: the scheme is not this stand-in's).
	auth func(scheme string, r *http.Request) error
	// undocumented, when set, checks by hand a request for an operation
	// the description lacks; it errs for any other.
	undocumented func(r *http.Request) error
	// readOnlyInRequests skips the readOnly check of request bodies: for a
	// description whose own request examples send readOnly properties.
	readOnlyInRequests bool
	// errorBody writes the vendor's error answer.
	errorBody func(w http.ResponseWriter, status int, msg string)

	mu        sync.Mutex
	requests  []Request
	rateLimit int // answer the next n requests 429
	fail5xx   int // answer the next n requests 503
	down      bool
	retry     string // Retry-After of a 429
}

// newServer starts a stand-in for vendor whose description is
// testdata/<file>; handle answers the requests the description allows.
func newServer(t testing.TB, vendor, file string, handle http.HandlerFunc) *Server {
	t.Helper()
	s := &Server{t: t, vendor: vendor, retry: "1", errorBody: func(w http.ResponseWriter, status int, msg string) {
		writeJSON(w, status, map[string]any{"message": msg})
	}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, handle) }))
	t.Cleanup(s.Close)
	doc, err := loadDoc(file)
	if err != nil {
		t.Fatalf("%s stand-in: %v", vendor, err)
	}
	doc.Servers = openapi3.Servers{{URL: s.URL}}
	if s.router, err = gorillamux.NewRouter(doc); err != nil {
		t.Fatalf("%s stand-in: router: %v", vendor, err)
	}
	return s
}

// loadDoc reads a trimmed description: OpenAPI 3, or Swagger 2 converted.
func loadDoc(file string) (*openapi3.T, error) {
	data, err := testdata.ReadFile("testdata/" + file)
	if err != nil {
		return nil, err
	}
	var probe struct {
		Swagger string `yaml:"swagger"`
	}
	if err := yaml.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	ctx := context.Background()
	if probe.Swagger != "" {
		// openapi2's types decode JSON: the YAML goes through it.
		var raw any
		if err := yaml.Unmarshal(data, &raw); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		js, err := json.Marshal(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		var d2 openapi2.T
		if err := json.Unmarshal(js, &d2); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		doc, err := openapi2conv.ToV3(&d2)
		if err != nil {
			return nil, fmt.Errorf("%s: convert: %w", file, err)
		}
		return doc, doc.Validate(ctx)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return doc, nil
}

// RateLimit makes the next n requests answer 429 with Retry-After
// (seconds).
func (s *Server) RateLimit(n int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit, s.retry = n, retryAfter
}

// Fail makes the next n requests answer 503.
func (s *Server) Fail(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail5xx = n
}

// Down makes every request answer 503 until Up.
func (s *Server) Down() { s.mu.Lock(); s.down = true; s.mu.Unlock() }

// Up ends Down.
func (s *Server) Up() { s.mu.Lock(); s.down = false; s.mu.Unlock() }

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// serve validates a request against the description, applies the
// faults, lets handle answer, and validates the answer.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, handle http.HandlerFunc) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(body)})
	fault := 0
	switch {
	case s.down:
		fault = http.StatusServiceUnavailable
	case s.rateLimit > 0:
		s.rateLimit--
		fault = http.StatusTooManyRequests
	case s.fail5xx > 0:
		s.fail5xx--
		fault = http.StatusServiceUnavailable
	}
	retry := s.retry
	s.mu.Unlock()

	in, err := s.validate(r)
	var secErr *openapi3filter.SecurityRequirementsError
	if errors.As(err, &secErr) {
		// Documented, but without the right credential: the vendor's 401.
		s.errorBody(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	if err != nil {
		s.t.Errorf("%s stand-in: %s %s is not allowed by the published API description: %v", s.vendor, r.Method, r.URL, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	switch fault {
	case http.StatusTooManyRequests:
		rec.Header().Set("Retry-After", retry)
		s.errorBody(rec, fault, "rate limit exceeded")
	case http.StatusServiceUnavailable:
		s.errorBody(rec, fault, "service unavailable")
	default:
		handle(rec, r)
	}
	if in != nil && rec.Code < 500 {
		if err := openapi3filter.ValidateResponse(r.Context(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
			Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		}); err != nil {
			s.t.Errorf("%s stand-in: its answer %d to %s %s does not have the documented shape: %v", s.vendor, rec.Code, r.Method, r.URL.Path, err)
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// validate checks r against the description; a route the description
// lacks is allowed only when the stand-in says so (manual), and then nil
// input comes back.
func (s *Server) validate(r *http.Request) (*openapi3filter.RequestValidationInput, error) {
	route, params, err := s.router.FindRoute(r)
	if err != nil && s.undocumented != nil {
		return nil, s.undocumented(r)
	}
	if err != nil {
		return nil, fmt.Errorf("no such operation: %w", err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{
			ExcludeReadOnlyValidations: s.readOnlyInRequests,
			AuthenticationFunc: func(_ context.Context, a *openapi3filter.AuthenticationInput) error {
				if s.auth == nil {
					return fmt.Errorf("no credentials known for scheme %s", a.SecuritySchemeName)
				}
				return s.auth(a.SecuritySchemeName, r)
			},
		},
	}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		return nil, err
	}
	return in, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// header returns a request header, checking it equals want: credentials.
func header(r *http.Request, name, want string) error {
	if got := r.Header.Get(name); got != want {
		return fmt.Errorf("header %s: wrong or missing credential", name)
	}
	return nil
}

// hasPrefixFold is strings.HasPrefix ignoring case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
