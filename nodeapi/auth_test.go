package nodeapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAuthorize: the answers of the node's admin token check, the node's
// and the simulated nodes' alike.
func TestAuthorize(t *testing.T) {
	for _, tc := range []struct {
		name, token, header string
		ok                  bool
		code                int
	}{
		{"right token", "s3cret", "Bearer s3cret", true, http.StatusOK},
		{"scheme in any case", "s3cret", "bearer  s3cret", true, http.StatusOK},
		{"wrong token", "s3cret", "Bearer other", false, http.StatusUnauthorized},
		{"no header", "s3cret", "", false, http.StatusUnauthorized},
		{"other scheme", "s3cret", "Basic s3cret", false, http.StatusUnauthorized},
		{"empty token", "s3cret", "Bearer ", false, http.StatusUnauthorized},
		{"admin API off", "", "Bearer ", false, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, PathStatus, nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			w := httptest.NewRecorder()
			if got := Authorize(w, r, tc.token); got != tc.ok || w.Code != tc.code {
				t.Fatalf("Authorize = %v, status %d; want %v, %d", got, w.Code, tc.ok, tc.code)
			}
			if tc.code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}
