package main

import (
	"time"

	"github.com/spf13/cobra"
)

// signingKeyJSON is a signing key's public facts as the management API shows them.
type signingKeyJSON struct {
	KID       string     `json:"kid"`
	Alg       string     `json:"alg"`
	State     string     `json:"state"`
	CreatedAt *time.Time `json:"created_at"`
	UpdatedAt *time.Time `json:"updated_at"`
}

// signingKeyListing shows keys by algorithm, then as the server orders them: oldest first.
var signingKeyListing = listing[signingKeyJSON]{
	header: []string{"KID", "ALG", "STATE", "CREATED", "UPDATED"},
	row: func(k signingKeyJSON) []string {
		return []string{k.KID, k.Alg, k.State, timeCell(k.CreatedAt), timeCell(k.UpdatedAt)}
	},
	key: func(k signingKeyJSON) string { return k.Alg },
}

// newSigningKeyCmd returns the signing-key noun. Each verb is one constructor in signingKeyVerbs; add a verb
// (rotate, revoke, …) by adding its constructor there.
func newSigningKeyCmd(a *adminFlags) *cobra.Command {
	var verbs []*cobra.Command
	for _, v := range signingKeyVerbs {
		verbs = append(verbs, v(a))
	}
	return newNoun("signing-key", "Inspect the token signing keys: list",
		`Inspect the keys that sign access tokens. Every key is published in the JWKS: next keys before they sign,
the current key of each algorithm, retired keys until the tokens they signed have expired.`, verbs...)
}

// signingKeyVerbs are the verbs of gatehouse signing-key.
var signingKeyVerbs = []func(*adminFlags) *cobra.Command{newSigningKeyListCmd}

func newSigningKeyListCmd(a *adminFlags) *cobra.Command {
	return newListCmd("List signing keys (never their private halves)", 0, func(cmd *cobra.Command, limit int) error {
		return listResources(cmd.Context(), a, "/api/v1/signing-keys", nil, limit, signingKeyListing)
	})
}
