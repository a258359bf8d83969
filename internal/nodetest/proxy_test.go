package nodetest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// backend is a fake node whose /readyz answers as ready says and whose
// other paths answer its name.
func backend(t *testing.T, name string, ready *atomic.Bool) string {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && !ready.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(hs.Close)
	return strings.TrimPrefix(hs.URL, "http://")
}

func TestProxySkipsNodesNotReady(t *testing.T) {
	var aReady, bReady atomic.Bool
	aReady.Store(true)
	bReady.Store(true)
	srv := NewProxy(t, backend(t, "a", &aReady), backend(t, "b", &bReady))
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	seen := map[string]int{}
	for range 4 {
		_, name := get()
		seen[name]++
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Fatalf("both ready: got %v, want 2 each (round robin)", seen)
	}

	bReady.Store(false)
	srv.Config.Handler.(*proxy).check() // the next health check, now
	for range 4 {
		if code, name := get(); code != http.StatusOK || name != "a" {
			t.Fatalf("b not ready: got %d %q, want 200 a", code, name)
		}
	}

	aReady.Store(false)
	srv.Config.Handler.(*proxy).check()
	if code, _ := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("none ready: got %d, want 503", code)
	}
}
