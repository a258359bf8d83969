package vendortest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PagerDuty is a stand-in for PagerDuty's REST API: incidents (listed by
// service, status and creation time, with offset pagination) and
// maintenance windows (created, listed by query, service and filter, and
// ended or deleted by DELETE, with their times recorded).
type PagerDuty struct {
	*Server
	Token string
	Now   func() time.Time

	mu        sync.Mutex
	incidents []pdIncident
	windows   []*Window
}

type pdIncident struct {
	number        int
	title, status string
	service       string
	created       time.Time
}

// Window is a maintenance window as the stand-in keeps it.
type Window struct {
	ID          string
	Description string
	Services    []string
	From        string
	Start, End  time.Time
	Deleted     bool
}

// NewPagerDuty starts the stand-in; token is the API key it accepts.
func NewPagerDuty(t testing.TB, token string) *PagerDuty {
	p := &PagerDuty{Token: token, Now: time.Now}
	p.Server = newServer(t, "PagerDuty", "pagerduty/openapi.yaml", p.handle)
	p.auth = func(scheme string, r *http.Request) error {
		if scheme != "api_key" {
			return fmt.Errorf("unknown scheme %s", scheme)
		}
		return header(r, "Authorization", "Token token="+p.Token)
	}
	// PagerDuty's description marks the type of every object and the id
	// of a reference readOnly, yet its own example of this request (and
	// its Go client) sends the window's type and its services' ids: the
	// readOnly check of request bodies is off for PagerDuty, every other
	// check on.
	p.readOnlyInRequests = true
	p.errorBody = func(w http.ResponseWriter, status int, msg string) {
		writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "code": 2000 + status}})
	}
	return p
}

// AddIncident triggers an incident on service now.
func (p *PagerDuty) AddIncident(service, title string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.incidents = append(p.incidents, pdIncident{number: len(p.incidents) + 1, title: title, status: "triggered", service: service, created: p.Now().UTC()})
}

// Windows returns the maintenance windows made so far.
func (p *PagerDuty) Windows() []Window {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Window, len(p.windows))
	for i, w := range p.windows {
		out[i] = *w
		out[i].Services = slices.Clone(w.Services)
	}
	return out
}

func (p *PagerDuty) handle(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.Now().UTC()
	q := r.URL.Query()
	limit, offset := 25, 0
	if v, err := strconv.Atoi(q.Get("limit")); err == nil && v > 0 {
		limit = min(v, 100)
	}
	if v, err := strconv.Atoi(q.Get("offset")); err == nil && v >= 0 {
		offset = v
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/incidents":
		since, _ := time.Parse(time.RFC3339, q.Get("since"))
		until, _ := time.Parse(time.RFC3339, q.Get("until"))
		var all []map[string]any
		for _, in := range p.incidents {
			if (len(q["service_ids[]"]) > 0 && !slices.Contains(q["service_ids[]"], in.service)) ||
				(len(q["statuses[]"]) > 0 && !slices.Contains(q["statuses[]"], in.status)) ||
				(!since.IsZero() && in.created.Before(since)) || (!until.IsZero() && in.created.After(until)) {
				continue
			}
			all = append(all, map[string]any{
				"id": fmt.Sprintf("Q%06d", in.number), "type": "incident", "incident_number": in.number, "title": in.title,
				"status": in.status, "created_at": in.created.Format(time.RFC3339),
				"service": map[string]any{"id": in.service, "type": "service_reference"},
			})
		}
		page, more := pageOf(all, offset, limit)
		writeJSON(w, http.StatusOK, map[string]any{"incidents": page, "limit": limit, "offset": offset, "more": more})
	case r.Method == http.MethodGet && r.URL.Path == "/maintenance_windows":
		var all []map[string]any
		for _, mw := range p.windows {
			if mw.Deleted || !strings.Contains(strings.ToLower(mw.Description), strings.ToLower(q.Get("query"))) ||
				(len(q["service_ids[]"]) > 0 && !overlaps(mw.Services, q["service_ids[]"])) || !inFilter(mw, q.Get("filter"), now) {
				continue
			}
			all = append(all, windowJSON(mw))
		}
		page, more := pageOf(all, offset, limit)
		writeJSON(w, http.StatusOK, map[string]any{"maintenance_windows": page, "limit": limit, "offset": offset, "more": more})
	case r.Method == http.MethodPost && r.URL.Path == "/maintenance_windows":
		var body struct {
			MW struct {
				Start    string `json:"start_time"`
				End      string `json:"end_time"`
				Desc     string `json:"description"`
				Services []struct{ ID string }
			} `json:"maintenance_window"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			p.errorBody(w, http.StatusBadRequest, err.Error())
			return
		}
		start, err1 := time.Parse(time.RFC3339, body.MW.Start)
		end, err2 := time.Parse(time.RFC3339, body.MW.End)
		if err1 != nil || err2 != nil || !end.After(start) {
			p.errorBody(w, http.StatusBadRequest, "Invalid Input Provided: start_time and end_time")
			return
		}
		if start.Before(now) { // "If this date is in the past, it will be updated to be the current time."
			start = now
		}
		mw := &Window{ID: fmt.Sprintf("PMW%04d", len(p.windows)+1), Description: body.MW.Desc, From: r.Header.Get("From"), Start: start, End: end}
		for _, s := range body.MW.Services {
			mw.Services = append(mw.Services, s.ID)
		}
		p.windows = append(p.windows, mw)
		writeJSON(w, http.StatusCreated, map[string]any{"maintenance_window": windowJSON(mw)})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/maintenance_windows/"):
		id := strings.TrimPrefix(r.URL.Path, "/maintenance_windows/")
		for _, mw := range p.windows {
			if mw.ID != id || mw.Deleted {
				continue
			}
			switch {
			case !mw.End.After(now):
				w.WriteHeader(http.StatusMethodNotAllowed) // already ended
			case mw.Start.After(now):
				mw.Deleted = true
				w.WriteHeader(http.StatusNoContent)
			default: // ongoing: ended now
				mw.End = now
				w.WriteHeader(http.StatusNoContent)
			}
			return
		}
		p.errorBody(w, http.StatusNotFound, "Not Found")
	default:
		p.errorBody(w, http.StatusNotFound, "Not Found")
	}
}

func windowJSON(mw *Window) map[string]any {
	svcs := make([]map[string]any, len(mw.Services))
	for i, s := range mw.Services {
		svcs[i] = map[string]any{"id": s, "type": "service_reference"}
	}
	return map[string]any{"id": mw.ID, "type": "maintenance_window", "description": mw.Description,
		"start_time": mw.Start.Format(time.RFC3339), "end_time": mw.End.Format(time.RFC3339), "services": svcs}
}

func inFilter(mw *Window, filter string, now time.Time) bool {
	switch filter {
	case "ongoing":
		return !mw.Start.After(now) && mw.End.After(now)
	case "future":
		return mw.Start.After(now)
	case "past":
		return !mw.End.After(now)
	case "open":
		return mw.End.After(now)
	}
	return true
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// pageOf cuts a page out of all: offset pagination.
func pageOf[T any](all []T, offset, limit int) ([]T, bool) {
	if offset >= len(all) {
		return []T{}, false
	}
	end := min(offset+limit, len(all))
	return all[offset:end], end < len(all)
}
