package apikey_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/auth"
)

// Keys computed outside Go (Python's zlib.crc32 and a hand-written base62), so they pin the format, not this code.
var vectors = []struct{ key, prefix string }{
	{"gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1", "gate"},
	{"acme_XYZabcdefghijklmnopqrstuvwxyz01233TySlH", "acme"},
	{"gate_0000000000000000000000000000000004E8DGG", "gate"},
	{"zz_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz34JhX8", "zz"},
	{"abcdefghijk9_9876543210zyxwvutsrqponmlkjihgfed3o2KRl", "abcdefghijk9"}, // longest
	{"gate_bcdefghijklmnopqrstuvwxyz0123A00000NPTu", "gate"},                 // checksum 00NPTu, left-padded
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		got, err := apikey.Parse(v.key)
		if err != nil || got != v.prefix {
			t.Errorf("Parse(%q) = %q, %v; want %q, nil", v.key, got, err, v.prefix)
		}
	}
}

func TestNewParse(t *testing.T) {
	for _, prefix := range []string{apikey.DefaultPrefix, "ab", "acme2", "abcdefghijkl"} {
		scanner := regexp.MustCompile(`\b` + prefix + `_[0-9A-Za-z]{39}\b`) // the pattern the package comment documents
		seen := map[string]bool{}
		for range 500 {
			key, err := apikey.New(prefix)
			if err != nil {
				t.Fatalf("New(%q): %v", prefix, err)
			}
			if got, want := len(key), len(prefix)+1+39; got != want {
				t.Fatalf("New(%q) is %d characters, want %d", prefix, got, want)
			}
			if got, err := apikey.Parse(key); err != nil || got != prefix {
				t.Fatalf("Parse(New(%q)) = %q, %v", prefix, got, err)
			}
			if m := scanner.FindString("token: " + key + "\n"); m != key {
				t.Fatalf("scanner pattern found %q in a line holding a new key", m)
			}
			if seen[key] {
				t.Fatalf("New(%q) repeated a key", prefix)
			}
			seen[key] = true
		}
	}
}

func TestNewInvalidPrefix(t *testing.T) {
	for _, prefix := range []string{"", "a", "Gate", "gate_", "1gate", "abcdefghijklm"} {
		key, err := apikey.New(prefix)
		var ve *auth.ValidationError
		if key != "" || !errors.As(err, &ve) || ve.Field != "prefix" || !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("New(%q) = %q, %v; want a ValidationError for field prefix", prefix, key, err)
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"gate", true},
		{"ab", true},
		{"a1", true},
		{"acme2024", true},
		{"abcdefghijkl", true},
		{"", false},
		{"a", false},
		{"abcdefghijklm", false},
		{"Gate", false},
		{"GATE", false},
		{"1abc", false},
		{"ga_te", false},
		{"ga-te", false},
		{"gate ", false},
		{"gäte", false},
		{"gate\x00", false},
	} {
		err := apikey.ValidatePrefix("api_key_prefix", tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok %v", tc.in, err, tc.ok)
		}
		var ve *auth.ValidationError
		if err != nil && (!errors.As(err, &ve) || ve.Field != "api_key_prefix" || !errors.Is(err, auth.ErrInvalid)) {
			t.Errorf("%q: %v is not a ValidationError for api_key_prefix", tc.in, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good := vectors[0].key // gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1
	tail := good[len("gate_"):]
	for _, tc := range []struct{ name, key string }{
		{"empty", ""},
		{"prefix only", "gate_"},
		{"too short", good[:len(good)-1]},
		{"too long", good + "0"},
		{"way too long", strings.Repeat(good, 1000)},
		{"prefix too short", "g_" + tail},
		{"prefix too long", "abcdefghijklm_" + tail},
		{"no prefix", "_" + tail + "ab"},
		{"uppercase prefix", "GATE_" + tail},
		{"prefix starts with digit", "1ate_" + tail},
		{"underscore in prefix", "ga_e_" + tail},
		{"dash separator", "gate-" + tail},
		{"dash in body", "gate_0123456789ABCDEFGHIJK-MNOPQRSTUVW1hX0W1"},
		{"space in body", "gate_0123456789ABCDEFGHIJK MNOPQRSTUVW1hX0W1"},
		{"unicode in body", "gate_0123456789ABCDEFGHIJKÄMNOPQRSTUVW1hX0W"},
		{"unicode in prefix", "gäte_" + tail[:len(tail)-1]},
		{"NUL", "gate_0123456789ABCDEFGHIJK\x00MNOPQRSTUVW1hX0W1"},
		{"leading space", " " + good},
		{"trailing newline", good + "\n"},
		{"Bearer", "Bearer " + good},
		{"bad checksum", good[:len(good)-1] + "2"},
		{"checksum above 2^32", "gate_0123456789ABCDEFGHIJKLMNOPQRSTUVWzzzzzz"},
		{"other prefix, same body and checksum", "acme_" + tail},
		{"case swapped", "gate_0123456789abcdefghijklmnopqrstuvw1hX0W1"},
	} {
		prefix, err := apikey.Parse(tc.key)
		if prefix != "" || !errors.Is(err, apikey.ErrMalformed) {
			t.Errorf("%s: Parse = %q, %v; want ErrMalformed", tc.name, prefix, err)
			continue
		}
		if len(tc.key) >= 8 && strings.Contains(err.Error(), tc.key[len(tc.key)-8:]) {
			t.Errorf("%s: error %q shows the key", tc.name, err)
		}
	}
}

// TestParseTypos checks the promise that a mistyped key never reaches the store: every single-byte substitution, and
// every swap of two neighbouring characters, is refused.
func TestParseTypos(t *testing.T) {
	keys := []string{vectors[0].key, vectors[3].key}
	for range 5 {
		keys = append(keys, mustNew(t, apikey.DefaultPrefix), mustNew(t, "abcdefghijkl"))
	}
	for _, key := range keys {
		b := []byte(key)
		for i := range b {
			orig := b[i]
			for c := range 256 {
				if byte(c) == orig {
					continue
				}
				b[i] = byte(c)
				if _, err := apikey.Parse(string(b)); err == nil {
					t.Errorf("Parse accepted %q with byte %d changed from %q to %q", key, i, orig, byte(c))
				}
			}
			b[i] = orig
		}
		for i := 0; i+1 < len(b); i++ {
			if b[i] == b[i+1] {
				continue
			}
			b[i], b[i+1] = b[i+1], b[i]
			if _, err := apikey.Parse(string(b)); err == nil {
				t.Errorf("Parse accepted %q with characters %d and %d swapped", key, i, i+1)
			}
			b[i], b[i+1] = b[i+1], b[i]
		}
	}
}

// TestBodyDistribution checks, loosely, that body characters are uniform over the 62 symbols, with chi-squared
// statistics (61 degrees of freedom: mean 61, standard deviation 11; 160 is 9 standard deviations out). Per position,
// it catches a biased encoding: the first digit of a fixed-width 192-bit number is always 0, 1 or 2 and scores about
// 250,000. Over all positions together, it catches modulo bias (taking random bytes %62 without rejection scores
// about 2,700).
func TestBodyDistribution(t *testing.T) {
	const n = 12400 // 200 expected per symbol and position
	var counts [33][62]int
	alphabet := "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for range n {
		body := mustNew(t, "ab")[3:36]
		for i := range body {
			counts[i][strings.IndexByte(alphabet, body[i])]++
		}
	}
	var all [62]int
	for i, row := range counts {
		if chi2 := chiSquared(row[:]); chi2 > 160 {
			t.Errorf("body position %d: chi-squared %.0f over %d keys, want about 61; counts %v", i, chi2, n, row)
		}
		for j, c := range row {
			all[j] += c
		}
	}
	if chi2 := chiSquared(all[:]); chi2 > 160 {
		t.Errorf("all body positions: chi-squared %.0f over %d keys, want about 61; counts %v", chi2, n, all)
	}
}

func chiSquared(counts []int) float64 {
	var total int
	for _, c := range counts {
		total += c
	}
	expected := float64(total) / float64(len(counts))
	var chi2 float64
	for _, c := range counts {
		d := float64(c) - expected
		chi2 += d * d / expected
	}
	return chi2
}

func TestHint(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{vectors[0].key, "gate_0123…"},
		{vectors[3].key, "zz_zzzz…"},
		{vectors[0].key[:len(vectors[0].key)-1] + "2", ""}, // bad checksum
		{"", ""},
		{"not a key at all", ""},
	} {
		if got := apikey.Hint(tc.key); got != tc.want {
			t.Errorf("Hint(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
	key := mustNew(t, "acme")
	if got := apikey.Hint(key); got != key[:9]+"…" {
		t.Errorf("Hint(%q) = %q", key, got)
	}
}

func mustNew(t testing.TB, prefix string) string {
	t.Helper()
	key, err := apikey.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func BenchmarkParse(b *testing.B) {
	key := mustNew(b, apikey.DefaultPrefix)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apikey.Parse(key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseBadChecksum(b *testing.B) {
	key := vectors[0].key[:len(vectors[0].key)-1] + "2"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apikey.Parse(key); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		mustNew(b, apikey.DefaultPrefix)
	}
}
