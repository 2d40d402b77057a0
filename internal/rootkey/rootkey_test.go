package rootkey_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

func TestParse(t *testing.T) {
	k := rootkey.Generate()
	for _, s := range []string{k.String(), k.String() + "\n", strings.TrimRight(k.String(), "=")} {
		got, err := rootkey.Parse(s)
		if err != nil || got.String() != k.String() {
			t.Errorf("Parse(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "not base64!", "c2hvcnQ=" /* 5 bytes */} {
		if _, err := rootkey.Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.key")
	k := rootkey.Generate()
	if err := k.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if err := k.WriteFile(path); err == nil {
		t.Error("WriteFile overwrote an existing key file")
	}
	got, err := rootkey.ReadFile(path)
	if err != nil || got.String() != k.String() {
		t.Fatalf("ReadFile: %v", err)
	}
	os.Chmod(path, 0o644)
	if _, err := rootkey.ReadFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable key file: err = %v", err)
	}
}

func TestDerive(t *testing.T) {
	k := rootkey.Generate()
	a, b := k.Derive("a"), k.Derive("b")
	if len(a) != 32 || bytes.Equal(a, b) || !bytes.Equal(a, k.Derive("a")) {
		t.Error("Derive: want 32 bytes, stable per purpose, different across purposes")
	}
	if bytes.Equal(a, rootkey.Generate().Derive("a")) {
		t.Error("two keys derive the same subkey")
	}
}

type settings struct{ m map[string][]byte }

func (s *settings) FindSetting(_ context.Context, name string) ([]byte, error) {
	v, ok := s.m[name]
	if !ok {
		return nil, auth.ErrNotFound
	}
	return v, nil
}

func (s *settings) CreateSetting(_ context.Context, name string, v []byte) error {
	if _, ok := s.m[name]; ok {
		return auth.ErrConflict
	}
	s.m[name] = v
	return nil
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	s := &settings{m: map[string][]byte{}}
	k := rootkey.Generate()
	if err := k.Check(ctx, s); err != nil {
		t.Fatalf("first check: %v", err)
	}
	if err := k.Check(ctx, s); err != nil {
		t.Fatalf("same key again: %v", err)
	}
	if err := rootkey.Generate().Check(ctx, s); !errors.Is(err, rootkey.ErrMismatch) {
		t.Errorf("another key: %v, want ErrMismatch", err)
	}
	for _, v := range s.m {
		if bytes.Contains(v, []byte(k.String())) {
			t.Error("the check value holds the key")
		}
	}
}
