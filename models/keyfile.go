package models

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	sig "github.com/weft-io/weft/internal/signed"
)

// Files of the core's model key in a certificate directory.
const (
	// KeyFile is the private key (PKCS#8 PEM, mode 0600): it signs the
	// models the core trains, and nothing else.
	KeyFile = "model.key"
	// PublicKeyFile is its public half, {"id","public_key"}: what edges
	// pin.
	PublicKeyFile = "model.pub.json"
)

// LoadOrCreateKey reads dir/model.key, making it (and dir/model.pub.json)
// on first use.
func LoadOrCreateKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, KeyFile)
	priv, err := sig.ReadPrivateKey(path)
	if err == nil {
		return priv, writePublic(dir, priv, false)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("models: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	if priv, err = sig.GenerateKey(); err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	if err := sig.WritePrivateKey(path, priv); errors.Is(err, os.ErrExist) {
		// Made by another process meanwhile: use that one.
		if priv, err = sig.ReadPrivateKey(path); err != nil {
			return nil, fmt.Errorf("models: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	return priv, writePublic(dir, priv, true)
}

// writePublic writes dir/model.pub.json when it is missing (or always,
// with force).
func writePublic(dir string, priv ed25519.PrivateKey, force bool) error {
	path := filepath.Join(dir, PublicKeyFile)
	if _, err := os.Stat(path); err == nil && !force {
		return nil
	}
	b, _ := json.MarshalIndent(sig.NewKey(priv.Public().(ed25519.PublicKey)), "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	return nil
}

// ReadPublicKey reads a pinned model key (model.pub.json).
func ReadPublicKey(path string) (sig.Key, error) {
	k, err := sig.ReadPublicKey(path)
	if err != nil {
		return sig.Key{}, fmt.Errorf("models: %w", err)
	}
	return k, nil
}
