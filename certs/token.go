package certs

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
)

// Role is what an API token allows. Each role allows what the lower ones
// do: viewer reads, operator also changes devices (desired state,
// rollouts), admin also manages the fabric.
type Role string

// The API roles, from least to most.
const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

var roleRank = map[Role]int{RoleViewer: 1, RoleOperator: 2, RoleAdmin: 3}

// Valid reports whether r is one of the API roles.
func (r Role) Valid() bool { return roleRank[r] > 0 }

// Allows reports whether r grants what need requires. An invalid role
// allows nothing.
func (r Role) Allows(need Role) bool {
	return r.Valid() && need.Valid() && roleRank[r] >= roleRank[need]
}

// Fixed claims of Weft API tokens.
const (
	TokenIssuer   = "weft"     // iss
	TokenAudience = "weft-api" // aud
)

// tokenLeeway is the clock skew allowed when checking exp, nbf and iat.
const tokenLeeway = time.Minute

// ScopeKeys are the keys a token's scope may use: the token then applies
// only to devices of that class, that device, or devices behind that edge
// or at that site. A key given several times is not possible; several keys
// all apply.
var ScopeKeys = []string{"class", "device", "edge", "site"}

// TokenClaims are the claims of a Weft API token.
type TokenClaims struct {
	Subject   string            // sub: who holds the token; required
	Role      Role              // role; required
	Scope     map[string]string // scope: restrictions by ScopeKeys; empty means the whole fabric
	ID        string            // jti: IssueToken makes a random one if empty
	IssuedAt  time.Time         // iat: IssueToken uses the current time if zero
	ExpiresAt time.Time         // exp: set by IssueToken to IssuedAt + ttl
}

// Token errors, for an HTTP layer to answer 401 with the reason.
var (
	ErrTokenMalformed   = errors.New("certs: token malformed")
	ErrTokenAlgorithm   = errors.New("certs: token algorithm not allowed")
	ErrTokenSignature   = errors.New("certs: token signature invalid")
	ErrTokenExpired     = errors.New("certs: token expired")
	ErrTokenNotYetValid = errors.New("certs: token not valid yet")
	ErrTokenAudience    = errors.New("certs: token audience mismatch")
	ErrTokenIssuer      = errors.New("certs: token issuer mismatch")
	ErrTokenClaims      = errors.New("certs: token claims invalid")
	ErrTokenRole        = errors.New("certs: token role invalid")
)

// jwtClaims is the JSON form of TokenClaims.
type jwtClaims struct {
	jwt.RegisteredClaims
	Role  Role              `json:"role"`
	Scope map[string]string `json:"scope,omitempty"`
}

// IssueToken signs an API token (a JWT, alg EdDSA) with iss TokenIssuer,
// aud TokenAudience and the given claims, valid for ttl from IssuedAt.
func IssueToken(priv ed25519.PrivateKey, claims TokenClaims, ttl time.Duration) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("%w: token signing key", ErrNoKey)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("%w: ttl %s must be positive", ErrTokenClaims, ttl)
	}
	if claims.IssuedAt.IsZero() {
		claims.IssuedAt = time.Now()
	}
	if claims.ID == "" {
		claims.ID = rand.Text()
	}
	claims.ExpiresAt = claims.IssuedAt.Add(ttl)
	if err := checkClaims(&claims); err != nil {
		return "", err
	}
	c := jwtClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    TokenIssuer,
			Subject:   claims.Subject,
			Audience:  jwt.ClaimStrings{TokenAudience},
			ExpiresAt: jwt.NewNumericDate(claims.ExpiresAt),
			IssuedAt:  jwt.NewNumericDate(claims.IssuedAt),
			ID:        claims.ID,
		},
		Role:  claims.Role,
		Scope: claims.Scope,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(priv)
	if err != nil {
		return "", fmt.Errorf("certs: sign token: %w", err)
	}
	return s, nil
}

// VerifyToken checks an API token at time now and returns its claims. The
// algorithm must be EdDSA and the signature pub's; exp is required; iss
// must be TokenIssuer and aud must include audience (TokenAudience if
// empty); sub, jti and a valid role are required, and the scope may use
// ScopeKeys only. A minute of clock skew is allowed. Errors are the
// ErrToken* sentinels, with detail.
func VerifyToken(pub ed25519.PublicKey, token, audience string, now time.Time) (*TokenClaims, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: token verification key", ErrNoKey)
	}
	if audience == "" {
		audience = TokenAudience
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithAudience(audience),
		jwt.WithIssuer(TokenIssuer),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithStrictDecoding(),
	)
	var c jwtClaims
	tok, err := p.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return pub, nil })
	if err != nil {
		return nil, tokenError(tok, err)
	}
	claims := &TokenClaims{
		Subject: c.Subject,
		Role:    c.Role,
		Scope:   c.Scope,
		ID:      c.ID,
	}
	if c.IssuedAt != nil {
		claims.IssuedAt = c.IssuedAt.Time
	}
	if c.ExpiresAt != nil {
		claims.ExpiresAt = c.ExpiresAt.Time
	}
	if err := checkClaims(claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkClaims validates what jwt does not.
func checkClaims(c *TokenClaims) error {
	if !c.Role.Valid() {
		return fmt.Errorf("%w: %q: want viewer, operator or admin", ErrTokenRole, c.Role)
	}
	if c.Subject == "" || len(c.Subject) > 256 || !printable(c.Subject) {
		return fmt.Errorf("%w: sub %q: want 1 to 256 printable characters", ErrTokenClaims, c.Subject)
	}
	if c.ID == "" || len(c.ID) > 256 || !printable(c.ID) {
		return fmt.Errorf("%w: jti %q: want 1 to 256 printable characters", ErrTokenClaims, c.ID)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Scope)) {
		if !slices.Contains(ScopeKeys, k) {
			return fmt.Errorf("%w: scope key %q: want one of %v", ErrTokenClaims, k, ScopeKeys)
		}
		if !ValidName(c.Scope[k]) {
			return fmt.Errorf("%w: scope %s=%q: want 1 to %d characters from [A-Za-z0-9._-]", ErrTokenClaims, k, c.Scope[k], maxName)
		}
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// tokenError maps a jwt error to one sentinel, the first that applies in
// this order: malformed, algorithm, signature, missing claim, expired, not
// yet valid, audience, issuer.
func tokenError(tok *jwt.Token, err error) error {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	if tok == nil {
		return fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	if alg, _ := tok.Header["alg"].(string); alg != jwt.SigningMethodEdDSA.Alg() {
		return fmt.Errorf("%w: %q, want EdDSA", ErrTokenAlgorithm, alg)
	}
	for _, m := range []struct{ jwt, ours error }{
		{jwt.ErrTokenSignatureInvalid, ErrTokenSignature},
		{jwt.ErrTokenUnverifiable, ErrTokenSignature},
		{jwt.ErrTokenRequiredClaimMissing, ErrTokenClaims},
		{jwt.ErrTokenExpired, ErrTokenExpired},
		{jwt.ErrTokenNotValidYet, ErrTokenNotYetValid},
		{jwt.ErrTokenUsedBeforeIssued, ErrTokenNotYetValid},
		{jwt.ErrTokenInvalidAudience, ErrTokenAudience},
		{jwt.ErrTokenInvalidIssuer, ErrTokenIssuer},
	} {
		if errors.Is(err, m.jwt) {
			if m.ours == ErrTokenClaims {
				return fmt.Errorf("%w: %v", m.ours, err)
			}
			return m.ours
		}
	}
	return fmt.Errorf("%w: %v", ErrTokenClaims, err)
}

// ParseTokenPublicKey reads an Ed25519 public key in a PKIX "PUBLIC KEY"
// PEM block, as token.pub holds it.
func ParseTokenPublicKey(pemBytes []byte) (ed25519.PublicKey, error) {
	der, err := decodePEM(pemBytes, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("not an Ed25519 public key (%T)", k)
	}
	return pub, nil
}
