package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/weft-io/weft/certs"
)

// OIDC configures tokens from an OpenID Connect provider, verified against
// the provider's JSON Web Key Set. They are accepted besides the tokens of
// `weft token create`.
type OIDC struct {
	// Issuer is the iss the provider's tokens must carry. Required.
	Issuer string
	// JWKSURL is where the provider publishes its keys (refreshed in the
	// background, and when a token names an unknown key). Required.
	JWKSURL string
	// Audience is the aud the tokens must carry. Required.
	Audience string
	// RoleClaim names the claim holding the Weft role (viewer, operator or
	// admin). Default "weft_role".
	RoleClaim string
	// Algorithms the provider signs with. Default RS256, ES256 and EdDSA.
	Algorithms []string
}

// oidcVerifier checks provider tokens.
type oidcVerifier struct {
	cfg OIDC
	kf  keyfunc.Keyfunc
}

func newOIDCVerifier(ctx context.Context, cfg OIDC) (*oidcVerifier, error) {
	if cfg.Issuer == "" || cfg.JWKSURL == "" || cfg.Audience == "" {
		return nil, errors.New("api: OIDC needs an issuer, a JWKS URL and an audience")
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "weft_role"
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"RS256", "ES256", "EdDSA"}
	}
	kf, err := keyfunc.NewDefaultCtx(ctx, []string{cfg.JWKSURL})
	if err != nil {
		return nil, fmt.Errorf("api: OIDC keys from %s: %w", cfg.JWKSURL, err)
	}
	return &oidcVerifier{cfg: cfg, kf: kf}, nil
}

// verify checks a provider token: algorithm, signature, exp (required),
// aud, iss, and a valid role in the role claim.
func (v *oidcVerifier) verify(token string, now time.Time) (*certs.TokenClaims, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, v.kf.Keyfunc,
		jwt.WithValidMethods(v.cfg.Algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(time.Minute),
	)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %v", certs.ErrTokenExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return nil, fmt.Errorf("%w: %v", certs.ErrTokenNotYetValid, err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return nil, fmt.Errorf("%w: %v", certs.ErrTokenAudience, err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return nil, fmt.Errorf("%w: %v", certs.ErrTokenIssuer, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		if strings.Contains(err.Error(), "signing method") {
			return nil, fmt.Errorf("%w: %v", certs.ErrTokenAlgorithm, err)
		}
		return nil, fmt.Errorf("%w: %v", certs.ErrTokenSignature, err)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, fmt.Errorf("%w: %v", certs.ErrTokenMalformed, err)
	default:
		return nil, fmt.Errorf("%w: %v", certs.ErrTokenClaims, err)
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return nil, fmt.Errorf("%w: no sub", certs.ErrTokenClaims)
	}
	role, _ := claims[v.cfg.RoleClaim].(string)
	if !certs.Role(role).Valid() {
		return nil, fmt.Errorf("%w: claim %s is %q", certs.ErrTokenRole, v.cfg.RoleClaim, role)
	}
	out := &certs.TokenClaims{Subject: sub, Role: certs.Role(role)}
	if raw, ok := claims["weft_scope"]; ok {
		// A restriction that cannot be read must not be dropped: that
		// would widen the token.
		scope, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: weft_scope is not an object", certs.ErrTokenClaims)
		}
		out.Scope = map[string]string{}
		for k, val := range scope {
			s, ok := val.(string)
			if !ok || !slices.Contains(certs.ScopeKeys, k) {
				return nil, fmt.Errorf("%w: weft_scope %s=%v", certs.ErrTokenClaims, k, val)
			}
			out.Scope[k] = s
		}
	}
	return out, nil
}
