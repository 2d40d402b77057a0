package authtest

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

func testSetting(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	want := []byte{0, 'v', 0xff, 1}
	_, err := s.FindSetting(ctx, "root_key_check")
	checkErr(t, "FindSetting before CreateSetting", err, auth.ErrNotFound)
	if err := s.CreateSetting(ctx, "root_key_check", want); err != nil {
		t.Fatalf("CreateSetting: %v", err)
	}
	checkErr(t, "CreateSetting again", s.CreateSetting(ctx, "root_key_check", []byte("other")), auth.ErrConflict)
	if err := s.CreateSetting(ctx, "empty", []byte{}); err != nil {
		t.Fatalf("CreateSetting(empty value): %v", err)
	}

	tests := []struct {
		name string
		want []byte
	}{
		{"root_key_check", want},
		{"empty", []byte{}},
	}
	for _, tt := range tests {
		got, err := s.FindSetting(ctx, tt.name)
		if err != nil {
			t.Errorf("FindSetting(%q): %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, equateEmpty); diff != "" {
			t.Errorf("FindSetting(%q) mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
	_, err = s.FindSetting(ctx, "ROOT_KEY_CHECK")
	checkErr(t, "FindSetting(name in another case)", err, auth.ErrNotFound)
}
