package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"wsfleet/nodeapi"
)

// FuzzServePoll sends arbitrary long-polling bodies, as JSON and as forms,
// through the whole request path: decoding, the extension pipeline and
// every handler. Whatever the input, the answer is a JSON array of replies
// or a 4xx, never a panic or a hang.
func FuzzServePoll(f *testing.F) {
	for _, s := range []string{
		`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]`,
		`[{"channel":"/meta/connect","clientId":"x","connectionType":"long-polling"}]`,
		`[{"channel":"/meta/subscribe","clientId":"x","subscription":["/a/**","/b"],"ext":{"since":3}}]`,
		`{"channel":"/a","data":{"x":[1,2]},"clientId":"x","ext":{"token":"t"}}`,
		`[{"channel":"/meta/unsubscribe","subscription":7}]`, `[]`, `[{}]`, `{"channel":"/meta/x"}`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	srv, err := New(Config{Timeout: 5 * time.Millisecond, MaxMessageBytes: 4096, MaxBatch: 10}, testLog(f))
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, body string, form bool) {
		req := httptest.NewRequest("POST", "/bayeux", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if form {
			req = httptest.NewRequest("POST", "/bayeux", strings.NewReader("message="+body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK:
			var out []json.RawMessage
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("200 with a body that is not a JSON array: %q", w.Body.String())
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
	})
}

func FuzzParseRules(f *testing.F) {
	f.Add("subscribe /user/{sub}/**\npublish /rooms/*\n# c\n\nboth /x")
	f.Add("subscribe")
	f.Add("allow /a b")
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseRules([]byte(s))
		if err != nil {
			return
		}
		for _, r := range rs {
			if !r.Subscribe && !r.Publish {
				t.Fatalf("rule allows nothing: %+v", r)
			}
			id := Identity{Subject: "alice"}
			_ = rs.canSubscribe(id, "/a/**")
			_ = rs.canPublish(id, "/a/b")
		}
	})
}

// FuzzDrainRequest checks that no accepted drain request, applied over
// the defaults, gives negative options.
func FuzzDrainRequest(f *testing.F) {
	f.Add(`{"window":"30s","max_rate":200,"deadline":"5m"}`)
	f.Add(`{"window":"-1s"}`)
	f.Add(`{"max_rate":"x"}`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := nodeapi.DecodeDrainRequest([]byte(s))
		if err != nil {
			return
		}
		o := drainOptions(r, DefaultDrainOptions)
		if o.Window < 0 || o.Deadline < 0 || o.MaxRate < 0 {
			t.Fatalf("negative options accepted: %+v", o)
		}
	})
}

// FuzzStampSeq checks that adding ext.seq to any JSON object yields a JSON
// object with that seq.
func FuzzStampSeq(f *testing.F) {
	f.Add(`{"channel":"/a","data":1}`, uint64(7))
	f.Add(`{}`, uint64(0))
	f.Add(` { "channel" : "/a" } `, uint64(1<<63))
	f.Fuzz(func(t *testing.T, payload string, seq uint64) {
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(payload), &obj) != nil {
			return
		}
		if _, has := obj["ext"]; has {
			return // payloads are built without ext
		}
		out := stampSeq([]byte(payload), seq)
		var got struct {
			Ext struct {
				Seq uint64 `json:"seq"`
			} `json:"ext"`
		}
		if err := json.Unmarshal(out, &got); err != nil || got.Ext.Seq != seq {
			t.Fatalf("stampSeq(%q, %d) = %q (%v)", payload, seq, out, err)
		}
	})
}
