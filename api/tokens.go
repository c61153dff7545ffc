package api

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// TokensTopic is the topic of /updates/down that records the tokens the
// core issued and the ones revoked. Written at the core only, it reaches
// every edge as desired state does, so an edge refuses a revoked token
// too, once its link has carried the record.
const TokensTopic = "tokens"

// Token issuing bounds.
const (
	// DefaultTokenTTL is the life of an issued token when the request
	// gives none.
	DefaultTokenTTL = 24 * time.Hour
	// MaxTokenTTL is the longest life a token may be issued with.
	MaxTokenTTL = 366 * 24 * time.Hour
	// tokensRefresh is how old the node's view of TokensTopic may be when
	// a token is checked: a revocation that reached the store is enforced
	// at most this long after.
	tokensRefresh = 500 * time.Millisecond
)

// errTokenRevoked is a token whose id was revoked.
var errTokenRevoked = errors.New("api: token revoked")

// errTokensReadOnly refuses issuing or revoking on an edge linked to a
// core: the core keeps the list.
var errTokensReadOnly = errors.New("api: tokens are issued and revoked at the core")

// TokenInfo is an issued or revoked token without its secret, as
// GET /api/v1/tokens lists it.
type TokenInfo struct {
	ID        string            `json:"id"`
	Subject   string            `json:"subject,omitempty"`
	Role      certs.Role        `json:"role,omitempty"`
	Scope     map[string]string `json:"scope,omitempty"`
	Expires   *time.Time        `json:"expires,omitempty"`
	LastUsed  *time.Time        `json:"last_used"`
	Revoked   bool              `json:"revoked"`
	RevokedAt *time.Time        `json:"revoked_at,omitempty"`
	Issued    *time.Time        `json:"issued,omitempty"`
	IssuedBy  string            `json:"issued_by,omitempty"`
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	Role    certs.Role        `json:"role"`
	Subject string            `json:"subject"`
	TTL     TTL               `json:"ttl,omitempty"` // 8h, or seconds; default 24h
	Scope   map[string]string `json:"scope,omitempty"`
}

// TTL is a token's life as a request gives it: a duration text ("8h",
// "90m") or a number of seconds.
type TTL string

// UnmarshalJSON takes a string as it is and a number as seconds.
func (t *TTL) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*t = TTL(n.String() + "s")
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("ttl: want a duration like \"8h\" or a number of seconds")
	}
	*t = TTL(s)
	return nil
}

// TokenIssued is the answer to POST /api/v1/tokens: the only time the
// token itself is shown.
type TokenIssued struct {
	ID      string    `json:"id"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// tokenRecord is a message of TokensTopic.
type tokenRecord struct {
	Op      string            `json:"op"` // issue or revoke
	ID      string            `json:"id"`
	Subject string            `json:"subject,omitempty"`
	Role    certs.Role        `json:"role,omitempty"`
	Scope   map[string]string `json:"scope,omitempty"`
	Expires time.Time         `json:"expires,omitzero"`
	Time    time.Time         `json:"ts"`
	By      string            `json:"by,omitempty"`
}

// tokenList is the node's view of TokensTopic, brought up to date at most
// every tokensRefresh, and when each token was last used on this node.
type tokenList struct {
	st *store.Store

	mu       sync.Mutex
	next     map[int]uint64 // per partition, the offset read up to
	loaded   time.Time
	tokens   map[string]*TokenInfo
	lastUsed map[string]time.Time
}

func newTokenList(st *store.Store) *tokenList {
	return &tokenList{st: st, next: map[int]uint64{}, tokens: map[string]*TokenInfo{}, lastUsed: map[string]time.Time{}}
}

// refresh reads what was appended to TokensTopic since the last read, if
// that was longer ago than tokensRefresh or force. l.mu is held.
func (l *tokenList) refresh(ctx context.Context, now time.Time, force bool) error {
	if !force && !l.loaded.IsZero() && now.Sub(l.loaded) < tokensRefresh && !now.Before(l.loaded) {
		return nil
	}
	info, err := l.st.Stat(ctx, store.UpdatesStream)
	if err != nil {
		return err
	}
	st := l.st.Stream(store.UpdatesStream)
	for p := range info.Partitions {
		for {
			msgs, start, err := st.ReadPast(ctx, TokensTopic, p, l.next[p], store.ReadOptions{})
			if err != nil {
				return err
			}
			if len(msgs) == 0 {
				l.next[p] = start
				break
			}
			for _, m := range msgs {
				l.apply(m.Value)
			}
			l.next[p] = msgs[len(msgs)-1].Offset + 1
		}
	}
	l.loaded = now
	return nil
}

// apply folds one record into the list.
func (l *tokenList) apply(b []byte) {
	var rec tokenRecord
	if json.Unmarshal(b, &rec) != nil || rec.ID == "" {
		return
	}
	t := l.tokens[rec.ID]
	if t == nil {
		t = &TokenInfo{ID: rec.ID}
		l.tokens[rec.ID] = t
	}
	switch rec.Op {
	case "issue":
		t.Subject, t.Role, t.Scope, t.IssuedBy = rec.Subject, rec.Role, rec.Scope, rec.By
		exp, at := rec.Expires, rec.Time
		t.Expires, t.Issued = &exp, &at
	case "revoke":
		if !t.Revoked {
			at := rec.Time
			t.Revoked, t.RevokedAt = true, &at
		}
	}
}

// check refuses a revoked token and notes its use.
func (l *tokenList) check(ctx context.Context, c *certs.TokenClaims, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refresh(ctx, now, false); err != nil {
		// The list cannot be read: refuse rather than let a revoked
		// token through.
		return fmt.Errorf("api: token list: %w", err)
	}
	if t := l.tokens[c.ID]; t != nil && t.Revoked {
		return fmt.Errorf("%w: token %s was revoked", errTokenRevoked, c.ID)
	}
	l.lastUsed[c.ID] = now
	return nil
}

// list returns the tokens, those still valid or revoked within their
// life, by subject then id.
func (l *tokenList) list(ctx context.Context, now time.Time) ([]TokenInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refresh(ctx, now, true); err != nil {
		return nil, err
	}
	out := make([]TokenInfo, 0, len(l.tokens))
	for _, t := range l.tokens {
		c := *t
		c.Scope = maps.Clone(t.Scope)
		if u, ok := l.lastUsed[t.ID]; ok {
			c.LastUsed = &u
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b TokenInfo) int {
		if a.Subject != b.Subject {
			return cmpString(a.Subject, b.Subject)
		}
		return cmpString(a.ID, b.ID)
	})
	return out, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// get returns one token's entry, if the list has it.
func (l *tokenList) get(ctx context.Context, id string, now time.Time) (TokenInfo, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refresh(ctx, now, true); err != nil {
		return TokenInfo{}, false, err
	}
	t := l.tokens[id]
	if t == nil {
		return TokenInfo{}, false, nil
	}
	c := *t
	if u, ok := l.lastUsed[id]; ok {
		c.LastUsed = &u
	}
	return c, true, nil
}

func (s *Server) tokenRoutes() {
	s.Handle("POST /api/v1/tokens", certs.RoleAdmin, http.HandlerFunc(s.tokenCreate))
	s.Handle("GET /api/v1/tokens", certs.RoleAdmin, http.HandlerFunc(s.tokenListHandler))
	s.Handle("DELETE /api/v1/tokens/{id}", certs.RoleAdmin, http.HandlerFunc(s.tokenRevoke))
	s.Handle("POST /api/v1/signin-links", certs.RoleAdmin, http.HandlerFunc(s.signinLink))
}

// IssueToken issues a token for c's holder as POST /api/v1/tokens does:
// signed with Config.TokenSigner, recorded in TokensTopic (without its
// secret) and in the audit stream under by.
func (s *Server) IssueToken(ctx context.Context, by string, req TokenRequest) (TokenIssued, error) {
	if s.cfg.DesiredReadOnly {
		return TokenIssued{}, errTokensReadOnly
	}
	if len(s.cfg.TokenSigner) != ed25519.PrivateKeySize {
		return TokenIssued{}, errNoSigner
	}
	ttl := DefaultTokenTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(string(req.TTL))
		if err != nil || d <= 0 || d > MaxTokenTTL {
			return TokenIssued{}, fmt.Errorf("%w: ttl %q: want a duration like 8h, at most %s", store.ErrInvalid, req.TTL, MaxTokenTTL)
		}
		ttl = d
	}
	now := s.now()
	claims := certs.TokenClaims{Subject: req.Subject, Role: req.Role, Scope: req.Scope, IssuedAt: now}
	tok, err := certs.IssueToken(s.cfg.TokenSigner, claims, ttl)
	if err != nil {
		return TokenIssued{}, fmt.Errorf("%w: %v", store.ErrInvalid, err)
	}
	got, err := certs.VerifyToken(s.cfg.TokenKey, tok, s.cfg.Audience, now)
	if err != nil {
		return TokenIssued{}, fmt.Errorf("api: issued token does not verify with the node's token key: %w", err)
	}
	rec := tokenRecord{Op: "issue", ID: got.ID, Subject: got.Subject, Role: got.Role, Scope: got.Scope, Expires: got.ExpiresAt.UTC(), Time: now.UTC(), By: by}
	if err := s.appendToken(ctx, rec, "token.issue", map[string]any{"id": got.ID, "role": got.Role, "scope": got.Scope, "expires": got.ExpiresAt.UTC()}, by); err != nil {
		return TokenIssued{}, err
	}
	return TokenIssued{ID: got.ID, Token: tok, Expires: got.ExpiresAt.UTC()}, nil
}

// RevokeToken revokes the token id (issued here or made offline by weft
// token create) as DELETE /api/v1/tokens/{id} does.
func (s *Server) RevokeToken(ctx context.Context, by, id string) (TokenInfo, error) {
	if s.cfg.DesiredReadOnly {
		return TokenInfo{}, errTokensReadOnly
	}
	if id == "" || len(id) > 256 || !printable(id) {
		return TokenInfo{}, fmt.Errorf("%w: token id %q", store.ErrInvalid, id)
	}
	now := s.now()
	if t, ok, err := s.tokens.get(ctx, id, now); err != nil {
		return TokenInfo{}, err
	} else if ok && t.Revoked {
		return t, nil
	}
	rec := tokenRecord{Op: "revoke", ID: id, Time: now.UTC(), By: by}
	if err := s.appendToken(ctx, rec, "token.revoke", map[string]any{"id": id}, by); err != nil {
		return TokenInfo{}, err
	}
	t, _, err := s.tokens.get(ctx, id, now)
	return t, err
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// appendToken appends rec to TokensTopic with its audit record, in one
// commit, and brings the node's list up to date at once.
func (s *Server) appendToken(ctx context.Context, rec tokenRecord, action string, detail any, by string) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	audit, err := s.auditFor(by, action, "/api/v1/tokens/"+rec.ID, detail)
	if err != nil {
		return err
	}
	// Through the node's one path of core-owned writes: every node of a
	// core cluster holds the same token list.
	w := shadow.Write{Records: []store.AppendRequest{{Path: store.UpdatesStream, Topic: TokensTopic, Partition: 0, Messages: []store.Message{{Value: b}}}},
		Local: []store.AppendRequest{audit}}
	if _, err := shadow.DownOf(s.cfg.Store).Write(ctx, w); err != nil {
		return err
	}
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	return s.tokens.refresh(ctx, s.now(), true)
}

// errNoSigner refuses issuing on a node without the token signing key.
var errNoSigner = errors.New("api: this node has no token signing key (token.key): issue tokens with weft token create where the key is")

func (s *Server) tokenError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errTokensReadOnly):
		Problem(w, http.StatusConflict, "Tokens owned elsewhere", "this node follows the token list of its core; issue and revoke tokens there")
	case errors.Is(err, errNoSigner):
		Problem(w, http.StatusServiceUnavailable, "Token issuing not configured", err.Error())
	default:
		s.Error(w, r, err)
	}
}

// tokenCreate serves POST /api/v1/tokens.
func (s *Server) tokenCreate(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		badBody(w, err, "")
		return
	}
	if req.Subject == "" || !req.Role.Valid() {
		badRequest(w, `want {"role": "viewer"|"operator"|"admin", "subject": "...", "ttl": "8h", "scope": {...}}`)
		return
	}
	iss, err := s.IssueToken(r.Context(), Claims(r.Context()).Subject, req)
	if err != nil {
		s.tokenError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, iss)
}

// TokenListResponse is the answer to GET /api/v1/tokens.
type TokenListResponse struct {
	Tokens []TokenInfo `json:"tokens"`
}

// tokenListHandler serves GET /api/v1/tokens.
func (s *Server) tokenListHandler(w http.ResponseWriter, r *http.Request) {
	ts, err := s.tokens.list(r.Context(), s.now())
	if err != nil {
		s.Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TokenListResponse{Tokens: ts})
}

// tokenRevoke serves DELETE /api/v1/tokens/{id}.
func (s *Server) tokenRevoke(w http.ResponseWriter, r *http.Request) {
	t, err := s.RevokeToken(r.Context(), Claims(r.Context()).Subject, r.PathValue("id"))
	if err != nil {
		s.tokenError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// SigninLinks mints one-time sign-in links: the console sets it
// (SetSigninLinks). It returns the URL, relative to the node (a path
// with the code), for the holder of token.
type SigninLinks func(token string) (path string, err error)

// SetSigninLinks makes POST /api/v1/signin-links mint links with f.
func (s *Server) SetSigninLinks(f SigninLinks) {
	s.signinMu.Lock()
	defer s.signinMu.Unlock()
	s.signinLinks = f
}

// SigninLinkResponse is the answer to POST /api/v1/signin-links.
type SigninLinkResponse struct {
	URL string `json:"url"`
}

// signinLink serves POST /api/v1/signin-links: a fresh one-time link that
// signs a browser in to the console. With the token signing key the link
// holds a new token (recorded, revocable) with the caller's subject, role
// and scope, valid DefaultTokenTTL; without it, the caller's own token.
func (s *Server) signinLink(w http.ResponseWriter, r *http.Request) {
	s.signinMu.Lock()
	f := s.signinLinks
	s.signinMu.Unlock()
	if f == nil {
		Problem(w, http.StatusServiceUnavailable, "No console", "this node serves no console to sign in to")
		return
	}
	c := Claims(r.Context())
	tok := bearer(r)
	if len(s.cfg.TokenSigner) == ed25519.PrivateKeySize && !s.cfg.DesiredReadOnly {
		iss, err := s.IssueToken(r.Context(), c.Subject, TokenRequest{Role: c.Role, Subject: c.Subject, Scope: c.Scope})
		if err != nil {
			s.tokenError(w, r, err)
			return
		}
		tok = iss.Token
	}
	path, err := f(tok)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	writeJSON(w, http.StatusCreated, SigninLinkResponse{URL: scheme + "://" + r.Host + path})
}

// bearer is the request's bearer token (authenticated by Require).
func bearer(r *http.Request) string {
	_, tok, _ := cutBearer(r.Header.Get("Authorization"))
	return tok
}
