// Package apiclient calls the HTTP API of a running Weft node (see
// docs/api.md) for the weft command: it sends the bearer token, trusts the
// node's TLS certificate through a CA file or a pinned fingerprint, turns
// problem documents into errors (Error) and reads Server-Sent Events
// (Client.Events). It knows the API's conventions, not its routes: callers
// name the paths.
package apiclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Config says which node to call and how.
type Config struct {
	// Server is the node's base URL, such as https://core.example.com:8443;
	// a path in it prefixes every route. Required.
	Server string
	// Token is the bearer token sent with every request; empty sends none.
	Token string
	// CAFile names a PEM file of the CAs that may sign an HTTPS server's
	// certificate. Empty: the system's roots.
	CAFile string
	// Fingerprint pins an HTTPS server's certificate instead: its SHA-256,
	// as "sha256:" and hex (colons allowed). Empty: no pin.
	Fingerprint string
	// Transport sends the requests. Nil: one built from CAFile and
	// Fingerprint.
	Transport http.RoundTripper
}

// Client calls one node's API.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.Server == "" {
		return nil, errors.New("apiclient: no server")
	}
	u, err := url.Parse(cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("apiclient: server %q: %w", cfg.Server, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("apiclient: server %q: want http://host[:port] or https://host[:port]", cfg.Server)
	}
	if strings.ContainsAny(cfg.Token, "\r\n") {
		return nil, errors.New("apiclient: the token holds a line break")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	rt := cfg.Transport
	if rt == nil {
		tc, err := tlsConfig(cfg.CAFile, cfg.Fingerprint)
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		rt = tr
	}
	return &Client{base: u, token: cfg.Token, hc: &http.Client{Transport: rt}}, nil
}

// tlsConfig trusts the CAs of caFile, or only the certificate whose
// SHA-256 is fingerprint, or (both empty) the system's roots.
func tlsConfig(caFile, fingerprint string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("apiclient: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("apiclient: CA file %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	if fingerprint != "" {
		want, err := ParseFingerprint(fingerprint)
		if err != nil {
			return nil, err
		}
		// The pin replaces the chain check: the certificate is the one
		// the user checked, whoever signed it.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("apiclient: the server sent no certificate")
			}
			if got := sha256.Sum256(cs.PeerCertificates[0].Raw); !bytes.Equal(got[:], want) {
				return fmt.Errorf("apiclient: the server's certificate has fingerprint %s, not the pinned %s", Fingerprint(cs.PeerCertificates[0]), fingerprint)
			}
			return nil
		}
	}
	return tc, nil
}

// Fingerprint is the pin of a certificate: "sha256:" and the hex of the
// SHA-256 of its DER bytes.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParseFingerprint reads "sha256:HEX" (colons between bytes allowed, any
// case) and returns the 32 bytes.
func ParseFingerprint(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(strings.ToLower(s), "sha256:")
	if !ok {
		return nil, fmt.Errorf("apiclient: fingerprint %q: want sha256:HEX", s)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("apiclient: fingerprint %q: want sha256: and 64 hex digits", s)
	}
	return b, nil
}

// Error is an answer with a status of 400 or more, from its problem
// document (RFC 9457) when it has one.
type Error struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail,omitempty"`
	Type   string `json:"type,omitempty"`
	// Reason says why a token was refused (401, 403).
	Reason string `json:"reason,omitempty"`
}

// Error is "403 Forbidden: role viewer may not ...": the status, the
// problem's title and its detail, on one line.
func (e *Error) Error() string {
	s := fmt.Sprintf("%d %s", e.Status, e.Title)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return strings.Join(strings.Fields(s), " ")
}

// errorOf reads the error answer resp.
func errorOf(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return ParseError(resp.StatusCode, resp.Header.Get("Content-Type"), b)
}

// ParseError makes the Error of an answer with the given status, content
// type and body: the problem document's members when the body is one,
// else the status text and the start of the body.
func ParseError(status int, contentType string, body []byte) *Error {
	e := &Error{}
	if strings.HasPrefix(contentType, "application/problem+json") || strings.HasPrefix(contentType, "application/json") {
		if json.Unmarshal(body, e) != nil {
			*e = Error{}
		}
	}
	e.Status = status
	if e.Title == "" {
		e.Title = http.StatusText(status)
		if e.Title == "" {
			e.Title = "HTTP error"
		}
		if e.Detail == "" {
			line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
			if len(line) > 200 {
				line = line[:200] + "..."
			}
			e.Detail = line
		}
	}
	return e
}

// Request is one call.
type Request struct {
	Method string // default GET
	Path   string // such as /api/v1/devices; escaped by the caller
	Query  url.Values
	Header http.Header
	Body   []byte // sent as application/json unless Header says otherwise
}

// URL is where r goes.
func (c *Client) URL(r Request) string {
	u := *c.base
	u.RawPath = ""
	u.Path = c.base.Path + r.Path
	if p, err := url.PathUnescape(u.Path); err == nil {
		u.Path, u.RawPath = p, c.base.Path+r.Path
	}
	u.RawQuery = r.Query.Encode()
	return u.String()
}

// send sends r and returns the response of a 2xx answer; any other status
// is an *Error.
func (c *Client) send(ctx context.Context, r Request) (*http.Response, error) {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL(r), body)
	if err != nil {
		return nil, fmt.Errorf("apiclient: %w", err)
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if r.Body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, transportError(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, errorOf(resp)
	}
	return resp, nil
}

// transportError explains a failed connection; an untrusted certificate
// names its fingerprint, for the user to check and pin.
func transportError(err error) error {
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) && len(cv.UnverifiedCertificates) > 0 {
		return fmt.Errorf("apiclient: the server's certificate is not trusted (%v); pass the CA that signed it (--ca-file), or check its fingerprint %s and pin it (--fingerprint)", cv.Err, Fingerprint(cv.UnverifiedCertificates[0]))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("apiclient: %w", err)
}

// Do sends r and decodes the JSON answer into out (if not nil). It
// returns the answer's headers.
func (c *Client) Do(ctx context.Context, r Request, out any) (http.Header, error) {
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.Header, err
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return nil, fmt.Errorf("apiclient: %s %s: the answer is not the expected JSON: %w", resp.Request.Method, r.Path, err)
	}
	return resp.Header, nil
}

// Get sends GET path?q and decodes the JSON answer into out.
func (c *Client) Get(ctx context.Context, path string, q url.Values, out any) error {
	_, err := c.Do(ctx, Request{Path: path, Query: q}, out)
	return err
}
