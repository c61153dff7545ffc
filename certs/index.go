package certs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Entry records one certificate issued from a directory, in its index
// (index.json). The index is what `weft certs ls` shows and what revocation
// by device id searches.
type Entry struct {
	Serial    string    `json:"serial"` // lowercase hex, as ParseSerial reads it
	Kind      Kind      `json:"kind,omitempty"`
	ID        string    `json:"id,omitempty"`    // device id
	Class     string    `json:"class,omitempty"` // device class
	Role      string    `json:"role,omitempty"`  // node role
	Name      string    `json:"name,omitempty"`  // gateway or node name
	Hosts     []string  `json:"hosts,omitempty"` // DNS names and IP addresses
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Revoked reports whether the certificate has been revoked.
func (e Entry) Revoked() bool { return !e.RevokedAt.IsZero() }

// Status returns "revoked", "expired" or "valid" at time now.
func (e Entry) Status(now time.Time) string {
	switch {
	case e.Revoked():
		return "revoked"
	case !e.NotAfter.IsZero() && now.After(e.NotAfter):
		return "expired"
	}
	return "valid"
}

// Subject names what the certificate identifies: its weft URI, or "-" for a
// serial revoked without having been issued here.
func (e Entry) Subject() string {
	if u := (Identity{Kind: e.Kind, ID: e.ID, Class: e.Class, Role: e.Role, Name: e.Name}).URI(); u != "" {
		return u
	}
	return "-"
}

// index is the content of index.json.
type index struct {
	CRLNumber int64   `json:"crl_number"` // number of the last CRL written
	Certs     []Entry `json:"certs"`
}

func (a *Authority) readIndex() (*index, error) {
	data, err := os.ReadFile(filepath.Join(a.Dir, indexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &index{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	var ix index
	if err := json.Unmarshal(data, &ix); err != nil {
		return nil, fmt.Errorf("certs: %s: %w", filepath.Join(a.Dir, indexFile), err)
	}
	return &ix, nil
}

func (a *Authority) writeIndex(ix *index) error {
	data, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := writeFile(filepath.Join(a.Dir, indexFile), append(data, '\n'), certMode); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// record appends entries to the index.
func (a *Authority) record(e ...Entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	ix, err := a.readIndex()
	if err != nil {
		return err
	}
	ix.Certs = append(ix.Certs, e...)
	return a.writeIndex(ix)
}

// List returns the index: every certificate issued from the directory, in
// the order issued, and serials revoked without having been issued here.
func (a *Authority) List() ([]Entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ix, err := a.readIndex()
	if err != nil {
		return nil, err
	}
	return ix.Certs, nil
}

// FormatSerial returns serial as an index and CRL tools show it: lowercase
// hex without separators.
func FormatSerial(serial *big.Int) string { return serial.Text(16) }

// ParseSerial reads a serial number written in hex, with or without a 0x
// prefix and with or without colons (as openssl prints them).
func ParseSerial(s string) (*big.Int, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0x"), "0X")
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() <= 0 || t == "" || strings.ContainsAny(t, "+-_") {
		return nil, fmt.Errorf("certs: invalid serial %q: want positive hex", s)
	}
	return n, nil
}

// find returns the index of the entry with serial s, or -1.
func (ix *index) find(s string) int {
	return slices.IndexFunc(ix.Certs, func(e Entry) bool { return e.Serial == s })
}
