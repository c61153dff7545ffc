package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestToken(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	good := TokenClaims{Subject: "alice@example.com", Role: RoleOperator, Scope: map[string]string{"class": "pump", "edge": "truck-7"}, IssuedAt: now}
	issue := func(c TokenClaims, ttl time.Duration) string {
		s, err := IssueToken(priv, c, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// raw signs arbitrary claims with any method and key.
	raw := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": TokenIssuer, "aud": TokenAudience, "sub": "bob", "role": "viewer", "jti": "j1",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
		if mod != nil {
			mod(c)
		}
		return c
	}
	goodToken := issue(good, time.Hour)
	parts := strings.Split(goodToken, ".")

	tests := []struct {
		name     string
		token    string
		audience string
		at       time.Time
		err      error
	}{
		{name: "good", token: goodToken, at: now.Add(30 * time.Minute)},
		{name: "good, explicit audience", token: goodToken, audience: TokenAudience, at: now},
		{name: "hand-made", token: raw(jwt.SigningMethodEdDSA, priv, claims(nil)), at: now},
		{name: "expired", token: goodToken, at: now.Add(2 * time.Hour), err: ErrTokenExpired},
		{name: "issued in the future", token: goodToken, at: now.Add(-time.Hour), err: ErrTokenNotYetValid},
		{name: "missing exp", token: raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { delete(c, "exp") })), at: now, err: ErrTokenClaims},
		{name: "wrong audience", token: goodToken, audience: "other-api", at: now, err: ErrTokenAudience},
		{name: "no audience", token: raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { delete(c, "aud") })), at: now, err: ErrTokenClaims},
		{name: "wrong issuer", token: raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { c["iss"] = "evil" })), at: now, err: ErrTokenIssuer},
		{name: "HS256 keyed with the public key", token: raw(jwt.SigningMethodHS256, []byte(pub), claims(nil)), at: now, err: ErrTokenAlgorithm},
		{name: "none", token: raw(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), at: now, err: ErrTokenAlgorithm},
		{name: "ES256", token: raw(jwt.SigningMethodES256, ecKey, claims(nil)), at: now, err: ErrTokenAlgorithm},
		{name: "unknown alg", token: `eyJhbGciOiJYWVoifQ.` + parts[1] + "." + parts[2], at: now, err: ErrTokenAlgorithm},
		{name: "other key", token: raw(jwt.SigningMethodEdDSA, otherPriv, claims(nil)), at: now, err: ErrTokenSignature},
		{name: "tampered claims", token: parts[0] + "." + strings.Split(raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { c["role"] = "admin" })), ".")[1] + "." + parts[2], at: now, err: ErrTokenSignature},
		{name: "bad role", token: raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { c["role"] = "root" })), at: now, err: ErrTokenRole},
		{name: "no role", token: raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { delete(c, "role") })), at: now, err: ErrTokenRole},
		{name: "no subject", token: raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { delete(c, "sub") })), at: now, err: ErrTokenClaims},
		{name: "no jti", token: raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { delete(c, "jti") })), at: now, err: ErrTokenClaims},
		{name: "unknown scope", token: raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { c["scope"] = map[string]string{"clas": "pump"} })), at: now, err: ErrTokenClaims},
		{name: "bad scope value", token: raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { c["scope"] = map[string]string{"class": "a/b"} })), at: now, err: ErrTokenClaims},
		{name: "exp as string", token: raw(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { c["exp"] = "tomorrow" })), at: now, err: ErrTokenMalformed},
		{name: "empty", token: "", at: now, err: ErrTokenMalformed},
		{name: "two parts", token: parts[0] + "." + parts[1], at: now, err: ErrTokenMalformed},
		{name: "bad base64", token: "!!." + parts[1] + "." + parts[2], at: now, err: ErrTokenMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := VerifyToken(pub, tc.token, tc.audience, tc.at)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "certs: token ") {
					t.Errorf("error %q does not say it is about the token", err)
				}
				return
			}
			if !c.Role.Valid() || c.Subject == "" || c.ID == "" || !c.ExpiresAt.After(c.IssuedAt) {
				t.Errorf("claims %+v", c)
			}
		})
	}

	c, err := VerifyToken(pub, goodToken, "", now)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != good.Subject || c.Role != good.Role || !maps.Equal(c.Scope, good.Scope) ||
		!c.IssuedAt.Equal(now) || !c.ExpiresAt.Equal(now.Add(time.Hour)) || len(c.ID) < 16 {
		t.Errorf("claims %+v, want %+v for an hour", c, good)
	}
	if other := issue(good, time.Hour); other == goodToken {
		t.Error("two tokens share a jti")
	}
}

func TestIssueTokenInvalid(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name   string
		key    ed25519.PrivateKey
		claims TokenClaims
		ttl    time.Duration
		err    error
	}{
		{"bad role", priv, TokenClaims{Subject: "a", Role: "root"}, time.Hour, ErrTokenRole},
		{"no subject", priv, TokenClaims{Role: RoleAdmin}, time.Hour, ErrTokenClaims},
		{"no ttl", priv, TokenClaims{Subject: "a", Role: RoleAdmin}, 0, ErrTokenClaims},
		{"unknown scope", priv, TokenClaims{Subject: "a", Role: RoleAdmin, Scope: map[string]string{"region": "eu"}}, time.Hour, ErrTokenClaims},
		{"no key", nil, TokenClaims{Subject: "a", Role: RoleAdmin}, time.Hour, ErrNoKey},
	}
	for _, tc := range tests {
		if _, err := IssueToken(tc.key, tc.claims, tc.ttl); !errors.Is(err, tc.err) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		}
	}
}

func TestRoleAllows(t *testing.T) {
	for _, tc := range []struct {
		have, need Role
		want       bool
	}{
		{RoleAdmin, RoleViewer, true},
		{RoleAdmin, RoleAdmin, true},
		{RoleOperator, RoleViewer, true},
		{RoleOperator, RoleAdmin, false},
		{RoleViewer, RoleOperator, false},
		{"root", RoleViewer, false},
		{RoleAdmin, "", false},
	} {
		if got := tc.have.Allows(tc.need); got != tc.want {
			t.Errorf("%q.Allows(%q) = %v", tc.have, tc.need, got)
		}
	}
}

func TestTokenKeyFiles(t *testing.T) {
	a := newAuthority(t)
	tok, err := IssueToken(a.TokenKey, TokenClaims{Subject: "ops", Role: RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyToken(a.TokenPublicKey, tok, TokenAudience, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func FuzzVerifyToken(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	good, err := IssueToken(priv, TokenClaims{Subject: "s", Role: RoleViewer, Scope: map[string]string{"site": "x"}, IssuedAt: now}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add(`eyJhbGciOiJub25lIn0.eyJzdWIiOiJzIn0.`)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := VerifyToken(pub, token, TokenAudience, now)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "certs: token ") {
				t.Errorf("error %q does not say it is about the token", err)
			}
			return
		}
		if !c.Role.Valid() || c.Subject == "" {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}
