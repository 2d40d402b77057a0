package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/gatehouse/gatehouse/tokencache"
)

// render returns tok's answer as JSON object members after expires_in (see rendered): the upstream's own JSON
// answer with every member kept but expires_in, or, if the upstream answered in another format, the members
// tokencache read from it.
func render(tok *tokencache.Token) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(tok.Raw, &m); err != nil || m == nil {
		m = map[string]json.RawMessage{
			"access_token": jsonString(tok.AccessToken),
			"token_type":   jsonString(tok.TokenType),
		}
		if tok.Scope != "" {
			m["scope"] = jsonString(tok.Scope)
		}
	}
	delete(m, "expires_in")
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // pass the upstream's values on as they are
	enc.Encode(m)            // a map of valid raw JSON always encodes
	obj := bytes.TrimSpace(buf.Bytes())
	if len(obj) == 2 { // {}
		return []byte("}")
	}
	obj[0] = ','
	return obj
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// writeOAuthError writes an RFC 6749 §5.2 error answer.
func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.challenge {
		h.Set("WWW-Authenticate", `Basic realm="gatehouse-proxy"`)
	}
	b, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.code, e.description})
	w.WriteHeader(e.status)
	w.Write(append(b, '\n'))
}
