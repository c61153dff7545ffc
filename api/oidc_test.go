package api

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestOIDCTokens accepts tokens of an identity provider verified against
// its JWKS, besides Weft's own, and refuses each kind of bad one with the
// reason.
func TestOIDCTokens(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	defer idp.Close()
	e := newEnv(t, func(c *Config) {
		c.OIDC = &OIDC{Issuer: "https://idp.example", JWKSURL: idp.URL, Audience: "weft-console"}
	})
	mint := func(k *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
		base := jwt.MapClaims{"iss": "https://idp.example", "aud": "weft-console", "sub": "bob", "weft_role": "viewer",
			"exp": time.Now().Add(time.Hour).Unix()}
		for k, v := range claims {
			if v == nil {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, base)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name   string
		token  string
		status int
		reason string
	}{
		{"valid provider token", mint(key, "k1", nil), 200, ""},
		{"weft's own token still works", e.token("viewer"), 200, ""},
		{"expired", mint(key, "k1", jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}), 401, "expired"},
		{"no exp", mint(key, "k1", jwt.MapClaims{"exp": nil}), 401, ""},
		{"wrong audience", mint(key, "k1", jwt.MapClaims{"aud": "someone-else"}), 401, "wrong_audience"},
		{"wrong issuer", mint(key, "k1", jwt.MapClaims{"iss": "https://evil.example"}), 401, "wrong_issuer"},
		{"signed by another key", mint(other, "k1", nil), 401, "bad_signature"},
		{"unknown key id", mint(other, "k2", nil), 401, ""},
		{"no role", mint(key, "k1", jwt.MapClaims{"weft_role": nil}), 401, "bad_role"},
		{"unreadable scope", mint(key, "k1", jwt.MapClaims{"weft_scope": map[string]any{"planet": "mars"}}), 401, "bad_claims"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do("GET", "/api/v1/volumes", tc.token, "")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.reason != "" && !strings.Contains(string(body), `"reason":"`+tc.reason+`"`) {
				t.Fatalf("body %s lacks reason %s", body, tc.reason)
			}
		})
	}
}
