package apikey

import (
	"errors"
	"hash/crc32"
	"slices"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, refuses only with one of its fixed errors (so no error can carry the
// key), and accepts only keys that meet the format, checked here independently of Parse: the prefix, the separator,
// a base62 body, and a checksum that decodes to the CRC-32 of everything before it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1",
		"acme_XYZabcdefghijklmnopqrstuvwxyz01233TySlH",
		"zz_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz34JhX8",
		"abcdefghijkl_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
		"gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W2",
		"gate_0123456789ABCDEFGHIJKLMNOPQRSTUVWzzzzzz",
		"ga_e_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1",
		"",
		"_",
		"Bearer gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1",
	} {
		f.Add(s)
	}
	errs := []error{errLength, errPrefix, errSeparator, errBody, errChecksum}
	f.Fuzz(func(t *testing.T, key string) {
		prefix, err := Parse(key)
		if err != nil {
			if prefix != "" || !slices.Contains(errs, err) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) = %q, %v; want \"\" and one of Parse's errors", key, prefix, err)
			}
			if Hint(key) != "" {
				t.Fatalf("Hint(%q) = %q for a key Parse refuses", key, Hint(key))
			}
			return
		}
		if err := ValidatePrefix("prefix", prefix); err != nil {
			t.Fatalf("Parse(%q) accepted prefix %q: %v", key, prefix, err)
		}
		rest, ok := strings.CutPrefix(key, prefix+"_")
		if !ok || len(rest) != 39 {
			t.Fatalf("Parse(%q) = %q: not prefix, separator and 39 characters", key, prefix)
		}
		var sum uint64
		for i, c := range []byte(rest) {
			d := strings.IndexByte(base62, c)
			if d < 0 {
				t.Fatalf("Parse(%q) accepted %q, which is not base62", key, c)
			}
			if i >= 33 {
				sum = sum*62 + uint64(d)
			}
		}
		if want := crc32.Checksum([]byte(key[:len(key)-6]), crc32.MakeTable(crc32.IEEE)); sum != uint64(want) {
			t.Fatalf("Parse(%q) accepted checksum %d, want %d", key, sum, want)
		}
		if got, want := Hint(key), prefix+"_"+rest[:4]+"…"; got != want {
			t.Fatalf("Hint(%q) = %q, want %q", key, got, want)
		}
	})
}
