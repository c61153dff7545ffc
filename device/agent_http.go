package device

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/weft-io/weft/firmware"
)

// HTTPSource fetches releases from a node's API (the device's edge, which
// mirrors /firmware): GET /api/v1/firmware/releases/{name}/{version}/manifest
// and .../image, resuming an interrupted image download with a byte range
// and If-Range on the image's ETag.
type HTTPSource struct {
	// Base is the node's API URL, such as https://edge-1:8443. Required.
	Base string
	// Token is sent as a bearer token (the API asks the viewer role).
	Token string
	// Client sends the requests. Nil: http.DefaultClient.
	Client *http.Client
	// Attempts bounds the requests for one image, resumes included.
	// Default 5.
	Attempts int
}

var _ Source = (*HTTPSource)(nil)

func (s *HTTPSource) url(name string, v firmware.Version, file string) string {
	return strings.TrimSuffix(s.Base, "/") + "/api/v1/firmware/releases/" + url.PathEscape(name) + "/" + v.String() + "/" + file
}

func (s *HTTPSource) get(ctx context.Context, u string, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	return c.Do(req)
}

// Manifest fetches a release's signed manifest.
func (s *HTTPSource) Manifest(ctx context.Context, name string, v firmware.Version) ([]byte, error) {
	resp, err := s.get(ctx, s.url(name, v, "manifest"), nil)
	if err != nil {
		return nil, fmt.Errorf("device: fetch manifest: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%w: fetch manifest %s@%s: %s", ErrNotOnEdge, name, v, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("device: fetch manifest %s@%s: %s", name, v, resp.Status)
	}
	// One byte more than a manifest may hold, so that verification sees an
	// oversized one as such.
	return io.ReadAll(io.LimitReader(resp.Body, firmware.MaxManifestSize+1))
}

// Image writes a release's image to w from byte off on, resuming with a
// Range request after a broken transfer. An error of w ends it at once.
func (s *HTTPSource) Image(ctx context.Context, name string, v firmware.Version, off int64, w io.Writer) error {
	attempts := s.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	var etag string
	var last error
	for range attempts {
		h := http.Header{}
		if off > 0 || etag != "" {
			h.Set("Range", fmt.Sprintf("bytes=%d-", off))
			if etag != "" {
				h.Set("If-Range", etag)
			}
		}
		resp, err := s.get(ctx, s.url(name, v, "image"), h)
		if err != nil {
			last = err
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		switch {
		case resp.StatusCode == http.StatusOK && off == 0,
			resp.StatusCode == http.StatusPartialContent && off > 0:
		case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
			resp.Body.Close()
			return nil // nothing past off: the image ends there
		case resp.StatusCode == http.StatusOK:
			resp.Body.Close()
			return fmt.Errorf("device: image %s@%s changed during the download", name, v)
		default:
			resp.Body.Close()
			return fmt.Errorf("device: fetch image %s@%s: %s", name, v, resp.Status)
		}
		if etag == "" {
			etag = resp.Header.Get("ETag")
		}
		cw := &countWriter{w: w}
		_, err = io.Copy(cw, resp.Body)
		resp.Body.Close()
		off += cw.n
		if err == nil {
			return nil
		}
		if cw.err != nil { // the writer refused: no retry
			return cw.err
		}
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("device: fetch image %s@%s: %d attempts: %w", name, v, attempts, last)
}

// countWriter counts what w took and keeps w's own error apart from the
// reader's.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}
