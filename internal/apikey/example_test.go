package apikey_test

import (
	"fmt"
	"regexp"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// Example makes a key, keeps only what the store may keep, and later checks a presented key: Parse first, which
// refuses typos without a lookup, then the hash, which the store finds by its unique index.
func Example() {
	root := rootkey.Generate()
	hasher := auth.NewSecretHasher(root.Derive("api key hashing")) // not the client secret subkey

	key, err := apikey.New("acme")
	if err != nil {
		panic(err)
	}
	stored := map[string]string{string(hasher.Hash(key)): apikey.Hint(key)} // stands in for the store
	fmt.Println("show once:", len(key), "characters")

	for _, presented := range []string{key, key[:len(key)-1] + "x"} {
		if _, err := apikey.Parse(presented); err != nil {
			fmt.Println("refused:", err)
			continue
		}
		hint, ok := stored[string(hasher.Hash(presented))]
		fmt.Println("found:", ok, len(hint) > 0)
	}
	// Output:
	// show once: 44 characters
	// found: true true
	// refused: checksum mismatch: malformed API key
}

func ExampleParse() {
	prefix, err := apikey.Parse("gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1")
	fmt.Println(prefix, err)

	_, err = apikey.Parse("gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0WI") // last character mistyped
	fmt.Println(err)
	// Output:
	// gate <nil>
	// checksum mismatch: malformed API key
}

func ExampleHint() {
	fmt.Println(apikey.Hint("gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1"))
	// Output: gate_0123…
}

// ExampleNew shows the pattern a secret scanner matches keys with.
func ExampleNew() {
	key, err := apikey.New(apikey.DefaultPrefix)
	if err != nil {
		panic(err)
	}
	scanner := regexp.MustCompile(`\bgate_[0-9A-Za-z]{39}\b`)
	fmt.Println(scanner.MatchString("export GATEHOUSE_API_KEY=" + key))
	// Output: true
}

func ExampleValidatePrefix() {
	fmt.Println(apikey.ValidatePrefix("api_key_prefix", "acme"))
	fmt.Println(apikey.ValidatePrefix("api_key_prefix", "ACME"))
	// Output:
	// <nil>
	// api_key_prefix: "ACME": use 2 to 12 lowercase letters and digits, starting with a letter (e.g. gate)
}
