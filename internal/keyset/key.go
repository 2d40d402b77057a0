package keyset

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// rsaBits is the size of the RSA keys Gatehouse generates for RS256.
const rsaBits = 2048

// generate returns a new key pair for alg.
func generate(alg auth.Algorithm) (crypto.Signer, error) {
	switch alg {
	case auth.RS256:
		return rsa.GenerateKey(rand.Reader, rsaBits)
	case auth.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case auth.EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, unsupported(alg)
}

// checkType reports whether priv is the kind of key alg signs with.
func checkType(alg auth.Algorithm, priv crypto.PrivateKey) error {
	ok := false
	switch alg {
	case auth.RS256:
		k, isRSA := priv.(*rsa.PrivateKey)
		ok = isRSA && k.N.BitLen() >= rsaBits
	case auth.ES256:
		k, isEC := priv.(*ecdsa.PrivateKey)
		ok = isEC && k.Curve == elliptic.P256()
	case auth.EdDSA:
		_, ok = priv.(ed25519.PrivateKey)
	default:
		return unsupported(alg)
	}
	if !ok {
		return fmt.Errorf("private key is a %T, not a key for %s", priv, alg)
	}
	return nil
}

// publicJWK returns the public half of priv as the JWK Gatehouse publishes, with kid set to its RFC 7638 SHA-256
// thumbprint.
func publicJWK(alg auth.Algorithm, priv crypto.Signer) (jose.JSONWebKey, error) {
	jwk := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(alg), Use: "sig"}
	kid, err := thumbprint(jwk)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	jwk.KeyID = kid
	return jwk, nil
}

// thumbprint returns the base64url RFC 7638 SHA-256 thumbprint of a JWK.
func thumbprint(jwk jose.JSONWebKey) (string, error) {
	t, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(t), nil
}

// newKey generates a key pair for alg and returns it ready to store in state, its private half sealed.
// Rotation will create next keys with it.
func (k *Keyset) newKey(alg auth.Algorithm, state auth.KeyState, now time.Time) (*auth.SigningKey, error) {
	priv, err := generate(alg)
	if err != nil {
		return nil, err
	}
	jwk, err := publicJWK(alg, priv)
	if err != nil {
		return nil, err
	}
	pub, err := jwk.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	sealed := k.aead.Seal(nil, nil, der, additionalData(jwk.KeyID, alg))
	clear(der)
	now = now.UTC()
	return &auth.SigningKey{
		ID:        jwk.KeyID,
		Alg:       alg,
		State:     state,
		PublicJWK: pub,
		Private:   sealed,
		CreatedAt: now,
		UpdatedAt: now,
	}, nil
}

// newAEAD returns AES-256-GCM under encKey with a random 96-bit nonce that Seal prepends and Open reads back.
func newAEAD(encKey []byte) (cipher.AEAD, error) {
	if len(encKey) != 32 {
		return nil, fmt.Errorf("signing key encryption key is %d bytes; it must be 32", len(encKey))
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// additionalData binds a sealed private key to its kid and algorithm, so a sealed key copied to another row does
// not open.
func additionalData(kid string, alg auth.Algorithm) []byte {
	return []byte("gatehouse signing key\x00" + string(alg) + "\x00" + kid)
}

// open decrypts a stored key and checks that it is what its row says: a key for Alg whose public half has the
// thumbprint ID and is the stored PublicJWK. It returns the private key and the JWK to publish, built from the
// private key rather than trusted from the row.
func (k *Keyset) open(sk *auth.SigningKey) (crypto.Signer, jose.JSONWebKey, error) {
	der, err := k.aead.Open(nil, nil, sk.Private, additionalData(sk.ID, sk.Alg))
	if err != nil {
		return nil, jose.JSONWebKey{}, fmt.Errorf("signing key %q: %w", sk.ID, ErrDecrypt)
	}
	defer clear(der)
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, jose.JSONWebKey{}, fmt.Errorf("signing key %q: parse private key: %w", sk.ID, err)
	}
	if err := checkType(sk.Alg, parsed); err != nil {
		return nil, jose.JSONWebKey{}, fmt.Errorf("signing key %q: %w", sk.ID, err)
	}
	priv := parsed.(crypto.Signer) // every type checkType accepts is one
	jwk, err := publicJWK(sk.Alg, priv)
	if err != nil {
		return nil, jose.JSONWebKey{}, fmt.Errorf("signing key %q: %w", sk.ID, err)
	}
	if jwk.KeyID != sk.ID {
		return nil, jose.JSONWebKey{}, fmt.Errorf("signing key %q: the private key's thumbprint is %q", sk.ID, jwk.KeyID)
	}
	var stored jose.JSONWebKey
	if err := stored.UnmarshalJSON(sk.PublicJWK); err != nil {
		return nil, jose.JSONWebKey{}, fmt.Errorf("signing key %q: stored public key: %w", sk.ID, err)
	}
	if t, err := thumbprint(stored); err != nil || t != sk.ID || !stored.IsPublic() {
		return nil, jose.JSONWebKey{}, fmt.Errorf("signing key %q: stored public key does not match the private key", sk.ID)
	}
	return priv, jwk, nil
}

func unsupported(alg auth.Algorithm) error {
	return fmt.Errorf("signing algorithm %q is not supported", alg)
}
