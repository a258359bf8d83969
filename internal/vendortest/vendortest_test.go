package vendortest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// failures is a testing.TB that keeps the stand-ins' failures instead of
// failing the test, so that a test can see them.
type failures struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (f *failures) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *failures) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.errs
	f.errs = nil
	return out
}

// TestUndocumentedRequestsFail sends requests each description allows and
// requests it does not: the first pass, the others are test failures
// (and a 400), and a wrong credential is the vendor's 401.
func TestUndocumentedRequestsFail(t *testing.T) {
	f := &failures{TB: t}
	pd := NewPagerDuty(f, "tok")
	dd := NewDatadog(f, "api", "app")
	sn := NewSentry(f, "stok")
	gl := NewGitLab(f, "gtok")
	pdHeaders := map[string]string{"Authorization": "Token token=tok", "Accept": "application/vnd.pagerduty+json;version=2", "Content-Type": "application/json"}
	ddHeaders := map[string]string{"DD-API-KEY": "api", "DD-APPLICATION-KEY": "app"}
	snHeaders := map[string]string{"Authorization": "Bearer stok"}
	glHeaders := map[string]string{"PRIVATE-TOKEN": "gtok", "Content-Type": "application/json"}
	for _, tc := range []struct {
		name, method, url, body string
		headers                 map[string]string
		status                  int
		fails                   string // a failure of the test, "" for none
	}{
		{"pagerduty incidents", "GET", pd.URL + "/incidents?statuses[]=triggered&service_ids[]=P1", "", pdHeaders, 200, ""},
		{"pagerduty bad status", "GET", pd.URL + "/incidents?statuses[]=open", "", pdHeaders, 400, "not allowed by the published API description"},
		{"pagerduty no such path", "GET", pd.URL + "/incident", "", pdHeaders, 400, "no such operation"},
		{"pagerduty window without From", "POST", pd.URL + "/maintenance_windows", `{"maintenance_window":{"type":"maintenance_window","start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T01:00:00Z","services":[{"id":"P1","type":"service_reference"}]}}`, pdHeaders, 400, "From"},
		{"pagerduty window without services", "POST", pd.URL + "/maintenance_windows", `{"maintenance_window":{"type":"maintenance_window","start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T01:00:00Z"}}`, map[string]string{"Authorization": "Token token=tok", "Accept": "application/vnd.pagerduty+json;version=2", "Content-Type": "application/json", "From": "a@b.c"}, 400, "services"},
		{"pagerduty wrong token", "GET", pd.URL + "/incidents", "", map[string]string{"Authorization": "Token token=nope", "Accept": "application/vnd.pagerduty+json;version=2", "Content-Type": "application/json"}, 401, ""},
		{"datadog query", "GET", dd.URL + "/api/v1/query?from=1&to=2&query=q", "", ddHeaders, 200, ""},
		{"datadog query without to", "GET", dd.URL + "/api/v1/query?from=1&query=q", "", ddHeaders, 400, "to"},
		{"datadog page too large", "GET", dd.URL + "/api/v1/monitor?page_size=5000", "", ddHeaders, 400, "page_size"},
		{"datadog no app key", "GET", dd.URL + "/api/v1/monitor", "", map[string]string{"DD-API-KEY": "api"}, 401, ""},
		{"sentry events", "GET", sn.URL + "/api/0/projects/o/p/events/?start=2026-01-01T00:00:00Z", "", snHeaders, 200, ""},
		{"sentry bad start", "GET", sn.URL + "/api/0/projects/o/p/events/?start=yesterday", "", snHeaders, 400, "start"},
		{"sentry bad sort", "GET", sn.URL + "/api/0/projects/o/p/issues/?sort=random", "", snHeaders, 400, "sort"},
		{"gitlab deployments", "GET", gl.URL + "/api/v4/projects/a%2Fb/deployments?status=running&environment=production", "", glHeaders, 200, ""},
		{"gitlab bad status", "GET", gl.URL + "/api/v4/projects/a%2Fb/deployments?status=busy", "", glHeaders, 400, "status"},
		{"gitlab note", "POST", gl.URL + "/api/v4/projects/a%2Fb/issues/3/notes", `{"body":"hello"}`, glHeaders, 201, ""},
		{"gitlab empty note", "POST", gl.URL + "/api/v4/projects/a%2Fb/issues/3/notes", `{"body":""}`, glHeaders, 400, "body is required"},
		{"gitlab note unknown attribute", "PUT", gl.URL + "/api/v4/projects/a%2Fb/issues/3/notes/1", `{"body":"x","colour":"red"}`, glHeaders, 400, "unknown attribute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			errs := f.take()
			switch {
			case tc.fails == "" && len(errs) > 0:
				t.Errorf("failed the test: %v", errs)
			case tc.fails != "" && (len(errs) != 1 || !strings.Contains(errs[0], tc.fails)):
				t.Errorf("failures %q, want one with %q", errs, tc.fails)
			}
		})
	}
}
