package vendortest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Datadog is a stand-in for Datadog's v1 API: the timeseries query
// (points a test adds, answered for the asked window) and the monitor
// list (filtered by monitor tag, paged by page and page_size).
type Datadog struct {
	*Server
	APIKey, AppKey string

	mu       sync.Mutex
	points   map[string][]point // by query
	monitors []monitor
}

type point struct {
	at    time.Time
	value float64
}

type monitor struct {
	id    int64
	name  string
	tags  []string
	state string
}

// NewDatadog starts the stand-in; it accepts the two keys.
func NewDatadog(t testing.TB, apiKey, appKey string) *Datadog {
	d := &Datadog{APIKey: apiKey, AppKey: appKey, points: map[string][]point{}}
	d.Server = newServer(t, "Datadog", "datadog/openapi.yaml", d.handle)
	d.auth = func(scheme string, r *http.Request) error {
		switch scheme {
		case "apiKeyAuth":
			return header(r, "DD-API-KEY", d.APIKey)
		case "appKeyAuth":
			return header(r, "DD-APPLICATION-KEY", d.AppKey)
		}
		return fmt.Errorf("scheme %s not served", scheme)
	}
	d.errorBody = func(w http.ResponseWriter, status int, msg string) {
		writeJSON(w, status, map[string]any{"errors": []string{msg}})
	}
	return d
}

// AddPoint adds a point of query's series at at.
func (d *Datadog) AddPoint(query string, at time.Time, v float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.points[query] = append(d.points[query], point{at, v})
}

// AddMonitor adds a monitor with its overall state (OK, Alert, Warn, No Data).
func (d *Datadog) AddMonitor(name, state string, tags ...string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := int64(1000 + len(d.monitors))
	d.monitors = append(d.monitors, monitor{id: id, name: name, tags: tags, state: state})
	return id
}

// SetMonitor changes a monitor's overall state.
func (d *Datadog) SetMonitor(id int64, state string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.monitors {
		if d.monitors[i].id == id {
			d.monitors[i].state = state
		}
	}
}

func (d *Datadog) handle(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := r.URL.Query()
	switch r.URL.Path {
	case "/api/v1/query":
		from, _ := strconv.ParseInt(q.Get("from"), 10, 64)
		to, _ := strconv.ParseInt(q.Get("to"), 10, 64)
		var pl [][]float64
		for _, p := range d.points[q.Get("query")] {
			if s := p.at.Unix(); s >= from && s <= to {
				pl = append(pl, []float64{float64(p.at.UnixMilli()), p.value})
			}
		}
		series := []map[string]any{}
		if len(pl) > 0 {
			series = append(series, map[string]any{"metric": q.Get("query"), "scope": "*", "pointlist": pl, "length": len(pl)})
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "res_type": "time_series", "query": q.Get("query"),
			"from_date": from * 1000, "to_date": to * 1000, "series": series})
	case "/api/v1/monitor":
		var all []map[string]any
		want := strings.Split(q.Get("monitor_tags"), ",")
		for _, m := range d.monitors {
			if q.Get("monitor_tags") != "" && !overlaps(m.tags, want) {
				continue
			}
			all = append(all, map[string]any{"id": m.id, "name": m.name, "type": "metric alert", "query": "avg(last_5m):avg:ws.errors{*} > 1",
				"overall_state": m.state, "tags": slices.Clone(m.tags)})
		}
		size, page := 100, 0
		if v, err := strconv.Atoi(q.Get("page_size")); err == nil && v > 0 {
			size = v
		}
		if v, err := strconv.Atoi(q.Get("page")); err == nil && v >= 0 {
			page = v
		}
		out, _ := pageOf(all, page*size, size)
		writeJSON(w, http.StatusOK, out)
	default:
		d.errorBody(w, http.StatusNotFound, "Not Found")
	}
}
