package vendortest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sentry is a stand-in for Sentry's web API: a project's events (in a
// start/end window) and issues (by a firstSeen and release query), with
// Sentry's cursor pagination in the Link header.
type Sentry struct {
	*Server
	Token string
	// PageSize is how many items a page holds; default 100.
	PageSize int

	mu     sync.Mutex
	events []sentryEvent
}

type sentryEvent struct {
	id, title, project, release string
	at                          time.Time
	group                       int
}

// NewSentry starts the stand-in; it accepts the bearer token.
func NewSentry(t testing.TB, token string) *Sentry {
	s := &Sentry{Token: token, PageSize: 100}
	s.Server = newServer(t, "Sentry", "sentry/openapi.yaml", s.handle)
	s.auth = func(scheme string, r *http.Request) error {
		if scheme != "auth_token" {
			return fmt.Errorf("scheme %s not served", scheme)
		}
		return header(r, "Authorization", "Bearer "+s.Token)
	}
	s.errorBody = func(w http.ResponseWriter, status int, msg string) {
		writeJSON(w, status, map[string]any{"detail": msg})
	}
	return s
}

// AddEvent records an error event of project at at, in release (may be
// ""); each event is its own issue first seen then.
func (s *Sentry) AddEvent(project, release, title string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.events) + 1
	s.events = append(s.events, sentryEvent{id: fmt.Sprintf("%032x", n), title: title, project: project, release: release, at: at.UTC(), group: n})
}

func (s *Sentry) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // api 0 projects org project what
	if len(parts) != 6 {
		s.errorBody(w, http.StatusNotFound, "The requested resource does not exist")
		return
	}
	project, what := parts[4], parts[5]
	q := r.URL.Query()
	var items []map[string]any
	switch what {
	case "events":
		start, _ := time.Parse(time.RFC3339, q.Get("start"))
		end, _ := time.Parse(time.RFC3339, q.Get("end"))
		for _, e := range s.events {
			if e.project != project || (!start.IsZero() && e.at.Before(start)) || (!end.IsZero() && e.at.After(end)) {
				continue
			}
			tags := []map[string]any{{"key": "level", "value": "error"}}
			if e.release != "" {
				tags = append(tags, map[string]any{"key": "release", "value": e.release})
			}
			items = append(items, map[string]any{"id": e.id, "event.type": "error", "groupID": strconv.Itoa(e.group), "eventID": e.id,
				"projectID": "1", "message": e.title, "title": e.title, "location": nil, "culprit": nil, "user": nil, "tags": tags,
				"platform": "go", "dateCreated": e.at.Format(time.RFC3339), "crashFile": nil, "metadata": map[string]any{}})
		}
	case "issues":
		var since time.Time
		release := ""
		for _, term := range strings.Fields(q.Get("query")) {
			switch {
			case strings.HasPrefix(term, "firstSeen:>="):
				since, _ = time.Parse(time.RFC3339, strings.TrimPrefix(term, "firstSeen:>="))
			case strings.HasPrefix(term, "release:"):
				release = strings.TrimPrefix(term, "release:")
			}
		}
		for _, e := range s.events {
			if e.project != project || e.at.Before(since) || (release != "" && e.release != release) {
				continue
			}
			items = append(items, map[string]any{"id": strconv.Itoa(e.group), "shortId": fmt.Sprintf("WS-%d", e.group), "title": e.title,
				"culprit": "", "firstSeen": e.at.Format(time.RFC3339), "lastSeen": e.at.Format(time.RFC3339), "count": "1", "userCount": 0,
				"numComments": 0, "assignedTo": nil, "logger": nil, "level": "error", "status": "unresolved", "statusDetails": map[string]any{},
				"isPublic": false, "hasSeen": false, "shareId": nil, "permalink": "http://sentry.invalid/issues/" + strconv.Itoa(e.group),
				"isSubscribed": false, "isBookmarked": false, "subscriptionDetails": nil, "project": map[string]any{"id": "1", "name": project, "slug": project},
				"metadata": map[string]any{"title": e.title}, "type": "error", "annotations": []string{}, "stats": map[string]any{}})
		}
	default:
		s.errorBody(w, http.StatusNotFound, "The requested resource does not exist")
		return
	}
	// Cursor pagination: the cursor is "0:<offset>:0".
	offset := 0
	if c := q.Get("cursor"); c != "" {
		if f := strings.Split(c, ":"); len(f) == 3 {
			offset, _ = strconv.Atoi(f[1])
		}
	}
	page, more := pageOf(items, offset, s.PageSize)
	q.Set("cursor", "0:0:1")
	link := fmt.Sprintf(`<%s%s?%s>; rel="previous"; results="false"; cursor="0:0:1"`, s.URL, r.URL.Path, q.Encode())
	q.Set("cursor", fmt.Sprintf("0:%d:0", offset+s.PageSize))
	link += fmt.Sprintf(`, <%s%s?%s>; rel="next"; results="%v"; cursor="0:%d:0"`, s.URL, r.URL.Path, q.Encode(), more, offset+s.PageSize)
	w.Header().Set("Link", link)
	if page == nil {
		page = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, page)
}
