package localcloud

import (
	"net/url"
)

// Client tokens, as EC2 documents them ("Ensuring idempotency"): a retry
// of a call that succeeded, with the same ClientToken and the same
// parameters, returns the original result and changes nothing; the same
// token with other parameters fails with IdempotentParameterMismatch.
// Tokens are case-sensitive. The SDKs fill in a random token when the
// caller gives none, so every RunInstances they send carries one, and a
// retry after a lost response must not launch a second reservation.

// tokenRecord is what a successful call with a client token left behind:
// the parameters it was called with and how to write its result again.
type tokenRecord struct {
	params string
	write  func(x *xmlw)
}

// tokenHandler is an action that takes a ClientToken: it does its work and
// returns the writer of its result, which idempotent calls at once and
// keeps for the retries. The writer reads the resources as they are then,
// so a retry shows, as on EC2, the current state of the original
// instances.
type tokenHandler func(c *Cloud, req *request) (func(x *xmlw), *apiError)

// idempotent makes h honour ClientToken; maxLen is the longest token the
// action accepts (64 for RunInstances, 128 for the launch template
// actions, as their API references say). A call without a token, or one
// that fails, records nothing, so a failed call can be retried with the
// same token.
func idempotent(maxLen int, h tokenHandler) handler {
	return func(c *Cloud, req *request, x *xmlw) *apiError {
		tok := req.Params.str("ClientToken")
		if len(tok) > maxLen || !isASCII(tok) {
			return errf("InvalidParameterValue", "Value (%s) for parameter clientToken is invalid. The client token must be at most %d ASCII characters.", tok, maxLen)
		}
		key, fp := req.Action+"\x00"+tok, ""
		if tok != "" {
			fp = tokenFingerprint(req.Params)
			if rec := c.tokens[key]; rec != nil {
				if rec.params != fp {
					return errf("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
				}
				rec.write(x)
				return nil
			}
		}
		write, e := h(c, req)
		if e != nil {
			return e
		}
		if tok != "" {
			c.tokens[key] = &tokenRecord{params: fp, write: write}
		}
		write(x)
		return nil
	}
}

// tokenFingerprint is a call's parameters but the token, in a canonical
// order: two calls are "the same request" when these are equal.
func tokenFingerprint(p params) string {
	v := url.Values{}
	for k, s := range p {
		if k != "ClientToken" {
			v.Set(k, s)
		}
	}
	return v.Encode()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
