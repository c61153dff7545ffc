package node

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/certs"
)

// RestoreHint says how to bring back a node's certificates. It never
// suggests `weft certs init`: on a node that makes a new CA that no
// device, gateway or core trusts.
const RestoreHint = "restore the certificate directory from its backup, or from the CA's machine copy the CA certificates (device-ca.crt, fabric-ca.crt) and token.pub and reissue this node's certificates there with `weft certs issue node|gateway`; do not run `weft certs init` on a node: it makes a new CA nobody trusts"

// ExpiryWarning is how long before a certificate's end CertWatch warns.
const ExpiryWarning = 30 * 24 * time.Hour

// CertFiles lists the certificate files a node serves and verifies with:
// the CA certificates its directory holds and the certificates of ids
// (certs.Files).
func CertFiles(auth *certs.Authority, ids ...certs.Identity) []string {
	var out []string
	if auth.DeviceCA != nil {
		out = append(out, filepath.Join(auth.Dir, "device-ca.crt"))
	}
	if auth.FabricCA != nil {
		out = append(out, filepath.Join(auth.Dir, "fabric-ca.crt"))
	}
	for _, id := range ids {
		cf, _ := certs.Files(auth.Dir, id.Kind, id.Name)
		out = append(out, cf)
	}
	return out
}

// Clock is the part of the store's clock the certificate checks need:
// store.Store has it.
type Clock interface {
	Now() time.Time
	AtLeast(ctx context.Context, t time.Time) error
}

// CheckCertificates judges the certificates in files at start against
// the store's time, not the system clock: a box whose clock is behind its
// certificates' start (a clock reset at power-up) still starts and
// buffers device data. A certificate's start is evidence of the time: the
// store's floor rises to the latest start among them, and it is logged.
// An expired certificate is logged as an error, not refused: the node
// still buffers, and the watcher goes on reporting it. Only a file that
// is missing or unreadable fails, with RestoreHint.
func CheckCertificates(ctx context.Context, clk Clock, files []string, log *slog.Logger) error {
	var latest time.Time
	var cs []*x509.Certificate
	for _, f := range files {
		c, err := readCert(f)
		if err != nil {
			return fmt.Errorf("certificate %s: %w; %s", f, err, RestoreHint)
		}
		cs = append(cs, c)
		if c.NotBefore.After(latest) {
			latest = c.NotBefore
		}
	}
	if now := clk.Now(); latest.After(now) {
		log.Warn("clock is behind the certificates' start; raising the time floor to it", "behind", latest.Sub(now).String(), "floor", latest.UTC())
		if err := clk.AtLeast(ctx, latest); err != nil {
			return err
		}
	}
	now := clk.Now()
	for i, c := range cs {
		if now.After(c.NotAfter) {
			log.Error("certificate expired; reissue it with `weft certs issue` from the CA", "file", files[i], "not_after", c.NotAfter.UTC())
		}
	}
	return nil
}

func readCert(file string) (*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// CertWatch notices, while the node runs, its certificate files vanishing,
// becoming unreadable, nearing their end or expiring, judged against the
// store's time; it logs each change and exports it as metrics (Collect).
type CertWatch struct {
	files []string
	now   func() time.Time
	log   *slog.Logger

	mu    sync.Mutex
	state map[string]certState

	notAfter, missing, expired *prometheus.Desc
}

type certState struct {
	missing  bool
	notAfter time.Time
	expired  bool
	expiring bool
}

// NewCertWatch watches files (CertFiles), with now the store's clock.
func NewCertWatch(files []string, now func() time.Time, log *slog.Logger) *CertWatch {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CertWatch{
		files: files, now: now, log: log.With("component", "certs"), state: make(map[string]certState),
		notAfter: prometheus.NewDesc("weft_certificate_not_after_seconds", "End of validity of a certificate the node uses, Unix seconds.", []string{"file"}, nil),
		missing:  prometheus.NewDesc("weft_certificate_missing", "1 when a certificate file the node uses is missing or unreadable.", []string{"file"}, nil),
		expired:  prometheus.NewDesc("weft_certificate_expired", "1 when a certificate the node uses is expired by the store's time.", []string{"file"}, nil),
	}
}

// Check looks at every file once, logging what changed since the last
// look.
func (w *CertWatch) Check() {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.files {
		old, seen := w.state[f]
		var st certState
		c, err := readCert(f)
		if err != nil {
			st.missing = true
			if !old.missing {
				w.log.Error("certificate file missing or unreadable; the node cannot make new connections with it", "file", f, "err", err, "fix", RestoreHint)
			}
		} else {
			st.notAfter = c.NotAfter
			st.expired = now.After(c.NotAfter)
			st.expiring = !st.expired && c.NotAfter.Sub(now) < ExpiryWarning
			switch {
			case st.expired && !old.expired:
				w.log.Error("certificate expired", "file", f, "not_after", c.NotAfter.UTC(), "fix", "reissue it with `weft certs issue node|gateway` from the CA")
			case st.expiring && !old.expiring:
				w.log.Warn("certificate expires soon", "file", f, "not_after", c.NotAfter.UTC(), "left", c.NotAfter.Sub(now).Round(time.Hour).String())
			case seen && old.missing:
				w.log.Info("certificate file back", "file", f)
			}
		}
		w.state[f] = st
	}
}

// Run checks every interval (default a minute) until ctx ends.
func (w *CertWatch) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w.Check()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Describe implements prometheus.Collector.
func (w *CertWatch) Describe(ch chan<- *prometheus.Desc) {
	ch <- w.notAfter
	ch <- w.missing
	ch <- w.expired
}

// Collect implements prometheus.Collector.
func (w *CertWatch) Collect(ch chan<- prometheus.Metric) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for f, st := range w.state {
		ch <- prometheus.MustNewConstMetric(w.missing, prometheus.GaugeValue, b(st.missing), f)
		ch <- prometheus.MustNewConstMetric(w.expired, prometheus.GaugeValue, b(st.expired), f)
		if !st.notAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(w.notAfter, prometheus.GaugeValue, float64(st.notAfter.Unix()), f)
		}
	}
}
