package api

import (
	"encoding/json"
	"testing"
)

// FuzzTokenRequest: any body of POST /api/v1/tokens decodes or fails,
// never panics, and a ttl that decodes is a text.
func FuzzTokenRequest(f *testing.F) {
	for _, s := range []string{`{"role":"viewer","subject":"bob","ttl":"8h","scope":{"class":"pump"}}`, `{"ttl":3600}`, `{"ttl":1e400}`, `{"ttl":null}`, `{"ttl":[1]}`, `{bad json`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req TokenRequest
		_ = json.Unmarshal(b, &req)
	})
}

// FuzzAuditCursor: any cursor decodes to a cursor with parts or fails.
func FuzzAuditCursor(f *testing.F) {
	f.Add(auditCursor{Desc: true, Parts: map[string]uint64{"0/core-1": 42}}.encode())
	f.Add("nonsense")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeAuditCursor(s)
		if err == nil && c.Parts == nil {
			t.Fatalf("%q decoded without parts", s)
		}
	})
}
