package verify

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// algSet is a set of JWS algorithms, one bit each.
type algSet uint16

const (
	algRS256 algSet = 1 << iota
	algRS384
	algRS512
	algPS256
	algPS384
	algPS512
	algES256
	algES384
	algES512
	algEdDSA
	numAlgs = iota

	allAlgs algSet = 1<<numAlgs - 1
	rsaAlgs        = algRS256 | algRS384 | algRS512 | algPS256 | algPS384 | algPS512
)

var algNames = [numAlgs]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// methods check the signatures: golang-jwt does the hashing and calls crypto/rsa, crypto/ecdsa or crypto/ed25519.
var methods = [numAlgs]jwt.SigningMethod{
	jwt.SigningMethodRS256, jwt.SigningMethodRS384, jwt.SigningMethodRS512,
	jwt.SigningMethodPS256, jwt.SigningMethodPS384, jwt.SigningMethodPS512,
	jwt.SigningMethodES256, jwt.SigningMethodES384, jwt.SigningMethodES512,
	jwt.SigningMethodEdDSA,
}

// algBit returns the bit of the algorithm named exactly name, or 0 for any other (none, HS256, …).
func algBit(name string) algSet {
	for i, n := range algNames {
		if n == name {
			return 1 << i
		}
	}
	return 0
}

func (a algSet) index() int {
	for i := range numAlgs {
		if a == 1<<i {
			return i
		}
	}
	return -1
}

func (a algSet) String() string {
	if i := a.index(); i >= 0 {
		return algNames[i]
	}
	return fmt.Sprintf("algSet(%#x)", uint16(a))
}

// typeAlgs returns the algorithms a public key of this type and size can verify.
func typeAlgs(pub any) algSet {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return 0
		}
		return rsaAlgs
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return algES256
		case elliptic.P384():
			return algES384
		case elliptic.P521():
			return algES512
		}
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return algEdDSA
		}
	}
	return 0
}

// key is a verification key from the JWKS.
type key struct {
	kid  string
	algs algSet // what it may verify: its declared alg or, without one, its type's; within Config.Algorithms
	pub  any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// verify checks sig over input with the key, for a token whose alg is alg.
func (k *key) verify(alg algSet, input string, sig []byte) error {
	if k.algs&alg == 0 {
		return fmt.Errorf("%w: the token says %s, key %q is for %s", ErrUnsupportedAlg, alg, truncate(k.kid, 64), k.algNames())
	}
	if err := methods[alg.index()].Verify(input, sig, k.pub); err != nil {
		return fmt.Errorf("%w (key %q, %s)", ErrSignature, truncate(k.kid, 64), alg)
	}
	return nil
}

func (k *key) algNames() string {
	var names []string
	for i, n := range algNames {
		if k.algs&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// token is a compact JWS split and decoded as far as is safe before its signature is checked.
type token struct {
	alg          algSet
	kid          string
	signingInput string // header.payload, as signed
	payload      string // still base64url: decoded only once the signature is good
	sig          []byte
}

// b64url marks the bytes of the base64url alphabet (RFC 4648 §5); JWS compact form has no padding (RFC 7515 §2).
var b64url = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = true
	}
	return t
}()

var b64 = base64.RawURLEncoding.Strict()

// parse splits a compact JWS (RFC 7515 §7.1) and checks its header: exactly three parts of base64url without
// padding, a header that is a JSON object without duplicate members, no crit, an allowed alg and an accepted typ.
func (v *Verifier) parse(s string) (token, error) {
	var t token
	if len(s) > v.maxSize {
		return t, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(s), v.maxSize)
	}
	dot1, dot2 := -1, -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		if b64url[c] {
			continue
		}
		if c != '.' {
			return t, fmt.Errorf("%w: a character outside base64url at offset %d", ErrMalformed, i)
		}
		switch {
		case dot1 < 0:
			dot1 = i
		case dot2 < 0:
			dot2 = i
		default:
			return t, fmt.Errorf("%w: more than three parts (a JWE, or not a JWS in compact form)", ErrMalformed)
		}
	}
	if dot2 < 0 {
		return t, fmt.Errorf("%w: not three dot-separated parts", ErrMalformed)
	}
	if dot1 == 0 || dot2 == dot1+1 {
		return t, fmt.Errorf("%w: empty header or payload", ErrMalformed)
	}
	hdr, err := b64.DecodeString(s[:dot1])
	if err != nil {
		return t, fmt.Errorf("%w: header is not base64url: %v", ErrMalformed, err)
	}
	sig, err := b64.DecodeString(s[dot2+1:])
	if err != nil {
		return t, fmt.Errorf("%w: signature is not base64url: %v", ErrMalformed, err)
	}
	t.signingInput, t.payload, t.sig = s[:dot2], s[dot1+1:dot2], sig

	var alg, typ string
	var hasAlg, hasTyp, crit bool
	err = members(hdr, maxHeaderMembers, func(name, val string) error {
		var ok bool
		switch name {
		case "alg":
			alg, ok = jsonString(val)
			hasAlg = true
		case "kid":
			t.kid, ok = jsonString(val)
		case "typ":
			typ, ok = jsonString(val)
			hasTyp = true
		case "crit":
			crit, ok = true, true
		default:
			// jku, x5u, jwk, x5c and the rest: the key comes from the JWKS, by kid, and from nowhere else.
			return nil
		}
		if !ok {
			return fmt.Errorf("header member %q is not a string", name)
		}
		return nil
	})
	if err != nil {
		return t, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if crit {
		return t, fmt.Errorf("%w: the header has crit", ErrCritical)
	}
	if !hasAlg {
		return t, fmt.Errorf("%w: the header has no alg", ErrMalformed)
	}
	t.alg = algBit(alg)
	if t.alg&v.algs == 0 {
		return t, fmt.Errorf("%w: %q", ErrUnsupportedAlg, truncate(alg, 32))
	}
	if !v.acceptsType(typ, hasTyp) {
		if !hasTyp {
			return t, fmt.Errorf("%w: the header has no typ", ErrType)
		}
		return t, fmt.Errorf("%w: %q", ErrType, truncate(typ, 64))
	}
	return t, nil
}

func (v *Verifier) acceptsType(typ string, present bool) bool {
	if !present {
		for _, t := range v.types {
			if t == "" {
				return true
			}
		}
		return false
	}
	typ = strings.TrimPrefix(strings.ToLower(typ), "application/")
	if typ == "" {
		return false
	}
	for _, t := range v.types {
		if t == typ {
			return true
		}
	}
	return false
}

// decodeClaims decodes a payload whose signature has been checked.
func decodeClaims(payload string) (*Claims, error) {
	raw, err := b64.DecodeString(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url: %v", ErrMalformed, err)
	}
	c := &Claims{Raw: raw}
	var scope, scp string // raw JSON values, "" when absent
	var cid, azp string
	err = members(raw, math.MaxInt, func(name, val string) error {
		var ok bool
		switch name {
		case "iss":
			c.Issuer, ok = jsonString(val)
		case "sub":
			c.Subject, ok = jsonString(val)
		case "aud":
			c.Audience, ok = jsonStrings(val)
		case "exp":
			c.ExpiresAt, ok = numericDate(val)
		case "nbf":
			c.NotBefore, ok = numericDate(val)
		case "iat":
			c.IssuedAt, ok = numericDate(val)
		case "jti":
			c.ID, ok = jsonString(val)
		case "client_id":
			c.ClientID, ok = jsonString(val)
		case "cid":
			cid, ok = jsonString(val)
		case "azp":
			azp, ok = jsonString(val)
		case "org_id":
			c.OrgID, ok = jsonString(val)
		case "scope":
			scope, ok = val, true
		case "scp":
			scp, ok = val, true
		default:
			return nil
		}
		if !ok {
			return fmt.Errorf("claim %q has the wrong type", name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if c.ClientID == "" {
		c.ClientID = cid
	}
	if c.ClientID == "" {
		c.ClientID = azp
	}
	switch {
	case scope != "":
		s, ok := jsonString(scope)
		if !ok {
			return nil, fmt.Errorf("%w: claims: scope is not a string", ErrMalformed)
		}
		c.Scopes = strings.Fields(s)
	case scp != "":
		if s, ok := jsonString(scp); ok {
			c.Scopes = strings.Fields(s)
		} else if c.Scopes, ok = jsonStrings(scp); !ok {
			return nil, fmt.Errorf("%w: claims: scp is neither a string nor an array of strings", ErrMalformed)
		}
	}
	return c, nil
}

// members calls fn with the name and raw value of each member of the JSON object obj, in order. It fails when obj
// is not a valid JSON object, has more than max members, or repeats a member name, even in another case: a token
// must mean one thing to every parser (RFC 7515 §4, RFC 7519 §4), encoding/json's case-insensitive matching in
// Claims.Decode included.
func members(b []byte, max int, fn func(name, val string) error) error {
	if !json.Valid(b) {
		return fmt.Errorf("not valid JSON")
	}
	obj := string(b) // one copy: the names and values passed to fn are substrings of it
	i := skipSpace(obj, 0)
	if obj[i] != '{' {
		return fmt.Errorf("not a JSON object")
	}
	var seen [16]string
	names := seen[:0]
	var folded map[string]bool // past len(seen) names, instead of comparing each with every other
	i++
	for {
		i = skipSpace(obj, i)
		switch obj[i] {
		case '}':
			return nil
		case ',':
			i = skipSpace(obj, i+1)
		}
		end := endOfString(obj, i)
		name, ok := jsonString(obj[i:end])
		if !ok {
			return fmt.Errorf("bad member name")
		}
		if len(names) == max {
			return fmt.Errorf("more than %d members", max)
		}
		if folded == nil {
			for _, n := range names {
				if strings.EqualFold(n, name) {
					return fmt.Errorf("member %q repeated", truncate(name, 32))
				}
			}
			if len(names) == cap(seen) {
				folded = make(map[string]bool, 2*len(names))
				for _, n := range names {
					folded[fold(n)] = true
				}
			}
		}
		if folded != nil {
			f := fold(name)
			if folded[f] {
				return fmt.Errorf("member %q repeated", truncate(name, 32))
			}
			folded[f] = true
		}
		names = append(names, name)
		i = skipSpace(obj, end) + 1 // past ':'
		i = skipSpace(obj, i)
		vend := endOfValue(obj, i)
		if err := fn(name, obj[i:vend]); err != nil {
			return err
		}
		i = vend
	}
}

// fold maps strings equal under simple case folding (strings.EqualFold) to one key, near enough: "ſ" and "s",
// "K" (Kelvin) and "k" alike.
func fold(s string) string { return strings.ToLower(strings.ToUpper(s)) }

func skipSpace(b string, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// endOfString returns the index just past the JSON string starting at b[i]; b is valid JSON.
func endOfString(b string, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// endOfValue returns the index just past the JSON value starting at b[i]; b is valid JSON.
func endOfValue(b string, i int) int {
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = endOfString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for ; j < len(b); j++ {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return j
		}
	}
	return j
}

// jsonString returns the JSON string val as a Go string, as encoding/json would: a substring of val unless val
// has escapes or invalid UTF-8.
func jsonString(val string) (string, bool) {
	if len(val) < 2 || val[0] != '"' {
		return "", false
	}
	inner := val[1 : len(val)-1]
	if !strings.ContainsRune(inner, '\\') && utf8.ValidString(inner) {
		return inner, true
	}
	var s string
	if err := json.Unmarshal([]byte(val), &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonStrings returns a JSON string or array of strings as a slice.
func jsonStrings(val string) ([]string, bool) {
	if s, ok := jsonString(val); ok {
		return []string{s}, true
	}
	if len(val) == 0 || val[0] != '[' {
		return nil, false
	}
	var ss []string
	if err := json.Unmarshal([]byte(val), &ss); err != nil {
		return nil, false
	}
	return ss, true
}

// numericDate reads a JSON number of seconds since the epoch (RFC 7519 §2), fractions allowed.
func numericDate(s string) (time.Time, bool) {
	if len(s) == 0 || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return time.Time{}, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > maxSeconds || n < -maxSeconds {
			return time.Time{}, false
		}
		return time.Unix(n, 0), true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f > maxSeconds || f < -maxSeconds {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// maxHeaderMembers bounds the members of a header, which is read before the signature is checked. Real ones have
// three to six.
const maxHeaderMembers = 32

// maxSeconds bounds NumericDates to about the year 5138, far from overflowing time.Time arithmetic.
const maxSeconds = 1 << 37
