package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/big"
	"os"
	"sync"
	"time"
)

// Revoker answers whether a certificate is revoked. *Revocations is one.
type Revoker interface {
	Revoked(serial *big.Int) bool
}

var _ Revoker = (*Revocations)(nil)

// Revocations is the set of revoked serials read from a CRL file, kept up
// to date by Run. A missing file means nothing is revoked.
//
// A CRL is accepted only if the expected CA signed it and its CRL number is
// not lower than the one in use; otherwise the last good list stays in
// force, so a truncated, forged, replayed or deleted file never un-revokes
// a certificate. The CRL's NextUpdate is not enforced.
type Revocations struct {
	path     string
	issuer   *x509.Certificate
	log      *slog.Logger
	interval time.Duration // how often Run looks at the file

	mu      sync.RWMutex
	serials map[string]bool // by FormatSerial
	number  *big.Int        // CRL number in force; nil before any CRL
	stat    fs.FileInfo     // of the file last loaded
	subs    []func()
}

// NewRevocations loads the CRL at path, which issuer must have signed. A
// nil logger discards Run's logs.
func NewRevocations(path string, issuer *x509.Certificate, logger *slog.Logger) (*Revocations, error) {
	if issuer == nil {
		return nil, fmt.Errorf("%w: no issuer certificate to check it against", ErrCRL)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Revocations{
		path:     path,
		issuer:   issuer,
		log:      logger.With("component", "crl", "path", path),
		interval: time.Second,
		serials:  map[string]bool{},
	}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Revocations returns the directory's CRL watcher, checked against its
// device CA.
func (a *Authority) Revocations(logger *slog.Logger) (*Revocations, error) {
	if a.DeviceCA == nil {
		return nil, fmt.Errorf("%w: device CA needed to check %s", ErrNoCA, a.CRLFile())
	}
	return NewRevocations(a.CRLFile(), a.DeviceCA.Cert, logger)
}

// Revoked reports whether serial is on the CRL in force. A nil
// *Revocations revokes nothing.
func (r *Revocations) Revoked(serial *big.Int) bool {
	if r == nil || serial == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.serials[FormatSerial(serial)]
}

// OnChange registers f to be called after each reload that changes the set
// of revoked serials, from the goroutine that reloaded. A gateway uses it to
// close the live sessions of devices newly revoked: it goes through its
// sessions and asks Revoked for each.
func (r *Revocations) OnChange(f func()) {
	r.mu.Lock()
	r.subs = append(r.subs, f)
	r.mu.Unlock()
}

// Reload reads the CRL file if it changed since last loaded (another file,
// size or modification time) and reports whether the set of revoked serials
// changed. On error the set in force is kept.
func (r *Revocations) Reload() (changed bool, err error) {
	fi, err := os.Stat(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		r.mu.RLock()
		had := r.number != nil
		r.mu.RUnlock()
		if had {
			return false, fmt.Errorf("%w: %s removed; keeping the last list", ErrCRL, r.path)
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("certs: %w", err)
	}
	r.mu.RLock()
	same := r.stat != nil && os.SameFile(r.stat, fi) && r.stat.ModTime().Equal(fi.ModTime()) && r.stat.Size() == fi.Size()
	number := r.number
	r.mu.RUnlock()
	if same {
		return false, nil
	}

	data, err := os.ReadFile(r.path)
	if err != nil {
		return false, fmt.Errorf("certs: %w", err)
	}
	crl, err := parseCRL(data, r.issuer)
	if err != nil {
		return false, fmt.Errorf("%s: %w", r.path, err)
	}
	next := crl.Number
	if next == nil {
		next = new(big.Int)
	}
	if number != nil && next.Cmp(number) < 0 {
		return false, fmt.Errorf("%w: %s: CRL number %s is lower than %s in force", ErrCRL, r.path, next, number)
	}
	serials := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		serials[FormatSerial(e.SerialNumber)] = true
	}

	r.mu.Lock()
	changed = !maps.Equal(serials, r.serials)
	r.serials, r.number, r.stat = serials, next, fi
	subs := r.subs
	r.mu.Unlock()
	if changed {
		for _, f := range subs {
			f()
		}
	}
	return changed, nil
}

// Run reloads the CRL file every second until ctx ends, then returns nil.
// Errors are logged once each and the list in force is kept.
func (r *Revocations) Run(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	var last string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		changed, err := r.Reload()
		switch {
		case err != nil:
			if err.Error() != last {
				r.log.Warn("crl not loaded", "err", err)
			}
			last = err.Error()
		case changed:
			last = ""
			r.mu.RLock()
			n, number := len(r.serials), r.number
			r.mu.RUnlock()
			r.log.Info("crl reloaded", "number", number.String(), "revoked", n)
		default:
			last = ""
		}
	}
}
