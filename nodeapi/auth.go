package nodeapi

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// Authorize checks a request to a node's admin API against the node's admin
// token (sent as a Bearer token) and, when it fails, answers it: with no
// token configured the admin API is off (403; an open drain endpoint would
// let anyone empty the node), a missing or wrong token is 401. The node
// (package server) and the local cloud's simulated nodes both check with
// it, so they answer alike.
func Authorize(w http.ResponseWriter, r *http.Request, token string) bool {
	if token == "" {
		http.Error(w, "admin endpoints disabled: no admin token configured", http.StatusForbidden)
		return false
	}
	tok, ok := BearerToken(r.Header.Get("Authorization"))
	if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wsfleet"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return false
	}
	return true
}

// BearerToken returns the token of an Authorization header of the Bearer
// scheme, whose name is case-insensitive (RFC 6750 section 2.1, RFC 9110
// section 11.1).
func BearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	return tok, tok != ""
}
