package device

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/store"
)

// edgeAPI is a node's API over a real store, trusting fwPinned's keys,
// with an admin and a viewer token.
func edgeAPI(t *testing.T, wrap func(http.Handler) http.Handler) (*store.Store, string, string, string) {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys := filepath.Join(t.TempDir(), "firmware-keys.json")
	if err := firmware.WriteKeySet(keys, fwPinned); err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	srv, err := api.New(api.Config{Store: st, TokenKey: pub, Gatherer: prometheus.NewRegistry(), FirmwareKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	admin, _ := certs.IssueToken(priv, certs.TokenClaims{Subject: "ops", Role: certs.RoleAdmin}, 24*365*time.Hour)
	viewer, _ := certs.IssueToken(priv, certs.TokenClaims{Subject: "dev-a", Role: certs.RoleViewer}, 24*365*time.Hour)
	return st, ts.URL, admin, viewer
}

func publishRelease(t *testing.T, url, token string, rel release) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile("manifest", "m")
	w.Write(rel.manifest)
	w, _ = mw.CreateFormFile("image", "i")
	w.Write(rel.image)
	mw.Close()
	req, _ := http.NewRequest("POST", url+"/api/v1/firmware/releases", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish: %s", resp.Status)
	}
}

// TestAgentOverHTTP installs a release fetched from a node's API, the
// transfer broken once and resumed with a byte range.
func TestAgentOverHTTP(t *testing.T) {
	var broken atomic.Bool
	var ranges atomic.Int64
	_, url, admin, viewer := edgeAPI(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Range") != "" {
				ranges.Add(1)
			}
			if filepath.Base(r.URL.Path) == "image" && broken.CompareAndSwap(false, true) {
				// Send the head of the image, then drop the connection.
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				w.Header().Set("Content-Length", rec.Header().Get("Content-Length"))
				w.Header().Set("ETag", rec.Header().Get("ETag"))
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes()[:1000])
				w.(http.Flusher).Flush() // on the wire, so the client cannot retry on its own
				panic(http.ErrAbortHandler)
			}
			h.ServeHTTP(w, r)
		})
	})
	rel := newRelease(t, "1.2.0", fwK1, noExpiry)
	publishRelease(t, url, admin, rel)
	a, _ := newTestAgent(t, t.TempDir(), &HTTPSource{Base: url, Token: viewer}, nil)
	res, _ := a.Handle(context.Background(), topicAnnounce, announce(rel))
	if res.State != StepCommitted || a.Version() != rel.m.Version {
		t.Fatalf("Handle = %+v", res)
	}
	if ranges.Load() != 1 || !broken.Load() {
		t.Fatalf("%d range requests, want 1 resume (broken %v)", ranges.Load(), broken.Load())
	}
}

// TestAgentRefusesTamperedImageOnEdge: the image in the edge's store is
// replaced after publishing; the device refuses it and keeps its version.
func TestAgentRefusesTamperedImageOnEdge(t *testing.T) {
	ctx := context.Background()
	st, url, admin, viewer := edgeAPI(t, nil)
	rel := newRelease(t, "1.2.0", fwK1, noExpiry)
	publishRelease(t, url, admin, rel)
	bad := bytes.Clone(rel.image)
	bad[10] ^= 1
	if _, err := st.File(firmware.ReleaseDir(rel.m.Name, rel.m.Version)+"/"+firmware.ImageFile).Write(ctx, bytes.NewReader(bad)); err != nil {
		t.Fatal(err)
	}
	a, out := newTestAgent(t, t.TempDir(), &HTTPSource{Base: url, Token: viewer}, nil)
	res, _ := a.Handle(ctx, topicAnnounce, announce(rel))
	if res.Reason != string(firmware.ReasonHashMismatch) || a.Version() != fwRunning {
		t.Fatalf("Handle = %+v, running %s (%v)", res, a.Version(), out.states(t))
	}
}

// noExpiry drops not_after: the node checks it against the real clock.
func noExpiry(m *firmware.Manifest) { m.NotAfter = time.Time{} }
