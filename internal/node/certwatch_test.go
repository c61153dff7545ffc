package node

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// nodeCerts makes a certificate directory with an edge's gateway and node
// certificates, issued by the system clock.
func nodeCerts(t *testing.T) (*certs.Authority, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := certs.Init(dir, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.EnsureGateway("edge1", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if err := auth.EnsureNode(certs.EdgeNode, "edge1", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	return auth, CertFiles(auth, certs.Identity{Kind: certs.KindGateway, Name: "edge1"}, certs.Identity{Kind: certs.KindNode, Role: certs.EdgeNode, Name: "edge1"})
}

func TestCheckCertificatesWithClockBehind(t *testing.T) {
	_, files := nodeCerts(t)
	behind := func() time.Time { return time.Now().Add(-2 * time.Hour) }
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, MemTableSize: 16 << 20, RetentionInterval: -1, Now: behind})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := CheckCertificates(context.Background(), st, files, log); err != nil {
		t.Fatalf("a node whose clock is behind its certificates does not start: %v", err)
	}
	for _, f := range files {
		c, err := readCert(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Now().Before(c.NotBefore) {
			t.Fatalf("%s is not yet valid by the store's time %v", f, st.Now())
		}
	}
	if !strings.Contains(logs.String(), "clock is behind the certificates' start") {
		t.Fatalf("not logged:\n%s", logs.String())
	}
}

func TestCertWatchNoticesVanishingFiles(t *testing.T) {
	auth, files := nodeCerts(t)
	var logs bytes.Buffer
	w := NewCertWatch(files, time.Now, slog.New(slog.NewTextHandler(&logs, nil)))
	w.Check()
	if n := testutil.CollectAndCount(w, "weft_certificate_missing"); n != len(files) {
		t.Fatalf("%d missing series, want %d", n, len(files))
	}
	if got := missing(t, w, files[len(files)-1]); got != 0 {
		t.Fatalf("present file reported missing")
	}
	if err := os.RemoveAll(auth.Dir); err != nil {
		t.Fatal(err)
	}
	w.Check()
	for _, f := range files {
		if missing(t, w, f) != 1 {
			t.Fatalf("%s gone but not reported", f)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "certificate file missing") || !strings.Contains(out, "weft certs issue node|gateway") {
		t.Fatalf("the vanishing is not logged with how to restore:\n%s", out)
	}
	// Logged once per change, not at every look.
	n := strings.Count(logs.String(), "certificate file missing")
	w.Check()
	if strings.Count(logs.String(), "certificate file missing") != n {
		t.Fatal("logged again without a change")
	}
}

func TestCertWatchNoticesExpiry(t *testing.T) {
	_, files := nodeCerts(t)
	var logs bytes.Buffer
	later := func() time.Time { return time.Now().Add(20 * 365 * 24 * time.Hour) }
	w := NewCertWatch(files, later, slog.New(slog.NewTextHandler(&logs, nil)))
	w.Check()
	if !strings.Contains(logs.String(), "certificate expired") {
		t.Fatalf("expiry not logged:\n%s", logs.String())
	}
	if got := testutil.CollectAndCount(w, "weft_certificate_expired"); got != len(files) {
		t.Fatalf("%d expired series", got)
	}
}

func TestLoadHintRestoresRatherThanInit(t *testing.T) {
	_, _, err := Load("edge", t.TempDir(), t.TempDir(), "edge1", nil)
	if !errors.Is(err, certs.ErrNoCA) {
		t.Fatalf("err %v, want ErrNoCA", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "backup") || !strings.Contains(msg, "weft certs issue node|gateway") || strings.Contains(msg, "(run weft certs init)") {
		t.Fatalf("restart hint: %s", msg)
	}
}

// missing is the weft_certificate_missing value of file.
func missing(t *testing.T, w *CertWatch, file string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(w)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "weft_certificate_missing" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == file {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no weft_certificate_missing for %s", file)
	return 0
}
