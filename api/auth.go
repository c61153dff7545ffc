package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/weft-io/weft/certs"
)

// realm is the realm named in WWW-Authenticate challenges.
const realm = "weft"

type claimsKey struct{}

// Claims returns the claims of the token that authenticated the request
// whose context is ctx, or nil outside a handler wrapped by Require.
func Claims(ctx context.Context) *certs.TokenClaims {
	c, _ := ctx.Value(claimsKey{}).(*certs.TokenClaims)
	return c
}

// scopeAware marks a handler that enforces token scopes itself.
type scopeAware struct{ http.Handler }

// ScopeAware marks h as enforcing the scope of the token (Claims(ctx).Scope)
// itself, so that Require lets scoped tokens reach it. Without the mark,
// Require refuses scoped tokens: a token meant for one device class must
// not read the streams of every device.
func ScopeAware(h http.Handler) http.Handler { return scopeAware{h} }

// tokenReasons maps token errors to the reason given in the problem and
// the error_description of the challenge (RFC 6750: printable ASCII
// without quotes or backslashes).
var tokenReasons = []struct {
	err         error
	reason      string
	description string
}{
	{certs.ErrTokenMalformed, "malformed", "token malformed"},
	{certs.ErrTokenAlgorithm, "wrong_algorithm", "token algorithm not allowed"},
	{certs.ErrTokenSignature, "bad_signature", "token signature invalid"},
	{certs.ErrTokenExpired, "expired", "token expired"},
	{certs.ErrTokenNotYetValid, "not_yet_valid", "token not valid yet"},
	{certs.ErrTokenAudience, "wrong_audience", "token audience mismatch"},
	{certs.ErrTokenIssuer, "wrong_issuer", "token issuer mismatch"},
	{certs.ErrTokenRole, "bad_role", "token role invalid"},
	{certs.ErrTokenClaims, "bad_claims", "token claims invalid"},
	{errTokenRevoked, "revoked", "token revoked"},
}

// errNoToken is a request without a bearer token.
var errNoToken = errors.New("no bearer token in the Authorization header")

// Require returns a handler that runs h only for requests carrying a valid
// API token (Authorization: Bearer) whose role allows role; h finds the
// token's claims with Claims. A missing or invalid token is answered 401
// with a WWW-Authenticate challenge, a token with too small a role or a
// scope h does not enforce (see ScopeAware) 403. It panics if role is not
// a valid role.
func (s *Server) Require(role certs.Role, h http.Handler) http.Handler {
	if !role.Valid() {
		panic(fmt.Sprintf("api: Require with invalid role %q", role))
	}
	_, scoped := h.(scopeAware)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := s.authenticate(r)
		if err != nil {
			s.unauthorized(w, err)
			return
		}
		if !claims.Role.Allows(role) {
			forbidden(w, "role", fmt.Sprintf("token role %s does not allow this; %s is needed", claims.Role, role))
			return
		}
		if len(claims.Scope) > 0 && !scoped {
			forbidden(w, "scope", "a token restricted by a scope cannot use this route")
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, claims)))
	})
}

// authenticate verifies the request's bearer token.
func (s *Server) authenticate(r *http.Request) (*certs.TokenClaims, error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return nil, errNoToken
	}
	if len(vals) > 1 {
		return nil, fmt.Errorf("%w: several Authorization headers", certs.ErrTokenMalformed)
	}
	ok, token, err := cutBearer(vals[0])
	if !ok {
		return nil, errNoToken
	}
	if err != nil {
		return nil, err
	}
	now := s.now()
	claims, err := certs.VerifyToken(s.cfg.TokenKey, token, s.cfg.Audience, now)
	if err != nil && s.oidc != nil && (errors.Is(err, certs.ErrTokenAlgorithm) || errors.Is(err, certs.ErrTokenSignature) ||
		errors.Is(err, certs.ErrTokenIssuer) || errors.Is(err, certs.ErrTokenAudience)) {
		// Not one of ours: perhaps the identity provider's.
		claims, err = s.oidc.verify(token, now)
	}
	if err != nil {
		return nil, err
	}
	if claims.ID != "" {
		if err := s.tokens.check(r.Context(), claims, now); err != nil {
			return nil, err
		}
	}
	return claims, nil
}

// cutBearer takes the token out of an Authorization header: ok is false
// when the scheme is not Bearer, err set when the token is empty.
func cutBearer(header string) (ok bool, token string, err error) {
	scheme, token, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return false, "", nil
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return true, "", fmt.Errorf("%w: empty bearer token", certs.ErrTokenMalformed)
	}
	return true, token, nil
}

// unauthorized answers a request whose token is missing or invalid. As RFC
// 6750 asks, a request without a bearer token gets a bare challenge; an
// invalid token gets error="invalid_token" and the reason.
func (s *Server) unauthorized(w http.ResponseWriter, err error) {
	p := ProblemDetails{Status: http.StatusUnauthorized, Title: "Invalid token", Detail: err.Error()}
	challenge := fmt.Sprintf("Bearer realm=%q", realm)
	if errors.Is(err, errNoToken) {
		p.Title, p.Reason = "Missing token", "missing"
	} else {
		p.Reason, p.Detail = "invalid", "token invalid"
		desc := "token invalid"
		for _, t := range tokenReasons {
			if errors.Is(err, t.err) {
				p.Reason, desc, p.Detail = t.reason, t.description, err.Error()
				break
			}
		}
		challenge += fmt.Sprintf(`, error="invalid_token", error_description=%q`, desc)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeProblem(w, p)
}

// forbidden answers a valid token that does not allow the request.
func forbidden(w http.ResponseWriter, reason, detail string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="insufficient_scope", error_description="token does not allow this request"`, realm))
	writeProblem(w, ProblemDetails{Status: http.StatusForbidden, Title: "Forbidden", Detail: detail, Reason: reason})
}
