package vendortest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// GitLab is a stand-in for GitLab's REST API (v4): a project's
// deployments (filtered by environment and status, paged) and an issue's
// comments (notes: listed, made, edited). The deployments requests are
// checked against GitLab's published description; the notes endpoints
// are not in it (see testdata/README.md), so their requests are checked
// by hand against GitLab's notes API documentation.
type GitLab struct {
	*Server
	Token string
	// PerPageMax caps per_page as GitLab does (100).
	PerPageMax int

	mu          sync.Mutex
	deployments []Deployment
	notes       map[string][]*Note // by "project#iid"
	nextNote    int64
}

// Deployment is a deployment as the stand-in keeps it.
type Deployment struct {
	Project, Environment, Status, Ref string
	IID                               int64
}

// Note is a comment on an issue, with its history of bodies.
type Note struct {
	ID       int64
	Body     string
	Bodies   []string // every body it had, first to last
	Created  time.Time
	Modified int
}

// NewGitLab starts the stand-in; it accepts the private token.
func NewGitLab(t testing.TB, token string) *GitLab {
	g := &GitLab{Token: token, PerPageMax: 100, notes: map[string][]*Note{}}
	g.Server = newServer(t, "GitLab", "gitlab/openapi_v2.yaml", g.handle)
	g.undocumented = g.checkNotes
	return g
}

// AddDeployment adds a deployment of project to environment.
func (g *GitLab) AddDeployment(project, environment, status string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deployments = append(g.deployments, Deployment{Project: project, Environment: environment, Status: status, Ref: "main", IID: int64(len(g.deployments) + 1)})
}

// SetDeployments sets the status of every deployment of project.
func (g *GitLab) SetDeployments(project, status string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.deployments {
		if g.deployments[i].Project == project {
			g.deployments[i].Status = status
		}
	}
}

// Notes returns the comments of project's issue iid.
func (g *GitLab) Notes(project string, iid int64) []Note {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Note
	for _, n := range g.notes[fmt.Sprintf("%s#%d", project, iid)] {
		c := *n
		c.Bodies = append([]string(nil), n.Bodies...)
		out = append(out, c)
	}
	return out
}

var notesPath = regexp.MustCompile(`^/api/v4/projects/([^/]+)/issues/([0-9]+)/notes(?:/([0-9]+))?$`)

// checkNotes checks a request for the notes endpoints by hand: the
// method and path of GitLab's "Notes API" page, its query parameters,
// and a JSON body with a non-empty body field and no other unknown keys.
func (g *GitLab) checkNotes(r *http.Request) error {
	m := notesPath.FindStringSubmatch(r.URL.EscapedPath())
	if m == nil {
		return fmt.Errorf("no such operation in the description or the notes API")
	}
	one := m[3] != ""
	switch {
	case r.Method == http.MethodGet && !one:
		for k := range r.URL.Query() {
			if k != "page" && k != "per_page" && k != "order_by" && k != "sort" && k != "activity_filter" {
				return fmt.Errorf("list issue notes: unknown query parameter %q", k)
			}
		}
		return nil
	case r.Method == http.MethodPost && !one, r.Method == http.MethodPut && one:
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			return fmt.Errorf("%s note: content type %q", r.Method, ct)
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return fmt.Errorf("%s note: body: %w", r.Method, err)
		}
		for k := range body {
			if k != "body" && k != "created_at" && k != "internal" && k != "confidential" && k != "merge_request_diff_head_sha" {
				return fmt.Errorf("%s note: unknown attribute %q", r.Method, k)
			}
		}
		if s, ok := body["body"].(string); !ok || s == "" {
			return fmt.Errorf("%s note: body is required, a non-empty string", r.Method)
		}
		return nil
	}
	return fmt.Errorf("%s %s: not an operation of the notes API", r.Method, r.URL.Path)
}

func (g *GitLab) handle(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("PRIVATE-TOKEN") != g.Token {
		g.errorBody(w, http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	q := r.URL.Query()
	page, per := 1, 20
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		per = min(v, g.PerPageMax)
	}
	path := r.URL.EscapedPath()
	if m := notesPath.FindStringSubmatch(path); m != nil {
		project, _ := url.PathUnescape(m[1])
		key := project + "#" + m[2]
		switch r.Method {
		case http.MethodGet:
			out := []map[string]any{}
			for _, n := range g.notes[key] {
				out = append(out, noteJSON(n))
			}
			g.paged(w, out, page, per)
		case http.MethodPost, http.MethodPut:
			var body struct{ Body string }
			json.NewDecoder(r.Body).Decode(&body)
			if r.Method == http.MethodPost {
				g.nextNote++
				n := &Note{ID: g.nextNote, Body: body.Body, Bodies: []string{body.Body}, Created: time.Now().UTC()}
				g.notes[key] = append(g.notes[key], n)
				writeJSON(w, http.StatusCreated, noteJSON(n))
				return
			}
			id, _ := strconv.ParseInt(m[3], 10, 64)
			for _, n := range g.notes[key] {
				if n.ID == id {
					n.Body, n.Bodies, n.Modified = body.Body, append(n.Bodies, body.Body), n.Modified+1
					writeJSON(w, http.StatusOK, noteJSON(n))
					return
				}
			}
			g.errorBody(w, http.StatusNotFound, "404 Not found")
		}
		return
	}
	if strings.HasPrefix(path, "/api/v4/projects/") && strings.HasSuffix(path, "/deployments") {
		project, _ := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(path, "/api/v4/projects/"), "/deployments"))
		out := []map[string]any{}
		for _, d := range g.deployments {
			if d.Project != project || (q.Get("environment") != "" && d.Environment != q.Get("environment")) || (q.Get("status") != "" && d.Status != q.Get("status")) {
				continue
			}
			out = append(out, map[string]any{"id": 100 + d.IID, "iid": d.IID, "ref": d.Ref, "sha": "0ec9e58fdfca6cdd6652c083c9edb53abc0bad52", "status": d.Status,
				"created_at": "2026-01-01T00:00:00Z", "environment": map[string]any{"id": 1, "name": d.Environment}})
		}
		g.paged(w, out, page, per)
		return
	}
	g.errorBody(w, http.StatusNotFound, "404 Not found")
}

// paged writes a page of items with GitLab's pagination headers.
func (g *GitLab) paged(w http.ResponseWriter, items []map[string]any, page, per int) {
	out, more := pageOf(items, (page-1)*per, per)
	pages := (len(items) + per - 1) / per
	h := w.Header()
	h.Set("X-Page", strconv.Itoa(page))
	h.Set("X-Per-Page", strconv.Itoa(per))
	h.Set("X-Total", strconv.Itoa(len(items)))
	h.Set("X-Total-Pages", strconv.Itoa(pages))
	if more {
		h.Set("X-Next-Page", strconv.Itoa(page+1))
	} else {
		h.Set("X-Next-Page", "")
	}
	writeJSON(w, http.StatusOK, out)
}

func noteJSON(n *Note) map[string]any {
	return map[string]any{"id": n.ID, "body": n.Body, "noteable_type": "Issue", "system": false,
		"created_at": n.Created.Format(time.RFC3339), "author": map[string]any{"id": 1, "username": "wsfleet"}}
}
