// Package rootkey loads Gatehouse's root key and derives purpose-bound subkeys from it with HKDF-SHA-256.
//
// The root key (32 random bytes, base64 in GATEHOUSE_ROOT_KEY or a key file) never touches the database. Signing
// keys are encrypted under one subkey and client secrets are hashed under another. A database opened with a
// different root key is refused at start (Check), never silently re-keyed.
package rootkey

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// Size is the root key's length in bytes.
const Size = 32

// ErrMismatch means the database was created with another root key.
var ErrMismatch = errors.New("the root key does not match the one this database was created with; " +
	"start with the original key (GATEHOUSE_ROOT_KEY or --root-key-file), or use a new database")

// Key is a root key.
type Key struct{ b []byte }

// Generate returns a new random root key.
func Generate() *Key {
	b := make([]byte, Size)
	rand.Read(b)
	return &Key{b: b}
}

// Parse decodes a base64 (standard or URL alphabet, padded or not) root key of exactly 32 bytes.
func Parse(s string) (*Key, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != Size {
				return nil, fmt.Errorf("root key is %d bytes; it must be %d bytes, base64-encoded (try: openssl rand -base64 32)", len(b), Size)
			}
			return &Key{b: b}, nil
		}
	}
	return nil, errors.New("root key is not valid base64 (try: openssl rand -base64 32)")
}

// ReadFile reads a root key file holding the base64 key. It refuses a file that others can read.
func ReadFile(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("root key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("root key file %s is readable by others (mode %o); run: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("root key file: %w", err)
	}
	k, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("root key file %s: %w", path, err)
	}
	return k, nil
}

// WriteFile writes the key to a new file with mode 0600. It fails if the file exists.
func (k *Key) WriteFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("root key file: %w", err)
	}
	if _, err := f.WriteString(k.String() + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("root key file: %w", err)
	}
	return f.Close()
}

// String returns the key in standard base64. Treat it as the secret it is.
func (k *Key) String() string { return base64.StdEncoding.EncodeToString(k.b) }

// Derive returns a 32-byte subkey bound to purpose. Different purposes give independent keys.
func (k *Key) Derive(purpose string) []byte {
	b, err := hkdf.Key(sha256.New, k.b, nil, "gatehouse "+purpose, 32)
	if err != nil {
		panic(err) // only for lengths HKDF cannot produce
	}
	return b
}

// settings is the part of the store Check needs.
type settings interface {
	FindSetting(ctx context.Context, name string) ([]byte, error)
	CreateSetting(ctx context.Context, name string, value []byte) error
}

const checkSetting = "root_key_check"

// Check binds a database to this key: the first call stores a check value derived from the key; later calls
// compare with it and return ErrMismatch for another key.
func (k *Key) Check(ctx context.Context, s settings) error {
	want := k.Derive("root key check")
	got, err := s.FindSetting(ctx, checkSetting)
	if errors.Is(err, auth.ErrNotFound) {
		err = s.CreateSetting(ctx, checkSetting, want)
		if errors.Is(err, auth.ErrConflict) { // another instance bound it first: compare with theirs
			got, err = s.FindSetting(ctx, checkSetting)
		} else if err == nil {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("check root key: %w", err)
	}
	if !hmac.Equal(got, want) {
		return ErrMismatch
	}
	return nil
}
