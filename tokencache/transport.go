package tokencache

import (
	"io"
	"net/http"
)

// Transport returns an http.RoundTripper that sends each request through base (nil means
// http.DefaultTransport) with "Authorization: Bearer <token>". If the API answers 401, it drops exactly the
// token it sent (see Invalidate), gets a new one and retries the request once, if the body can be sent again
// (no body, or Request.GetBody set, as http.NewRequest does for in-memory bodies); a second 401 is returned
// as is, and so is a 401 when there is no other token to try. The request's context bounds waiting for a token.
func (s *Source) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{s: s, base: base}
}

type transport struct {
	s    *Source
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	tok, err := t.s.Token(ctx)
	if err != nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper always closes the body
		}
		return nil, err
	}
	resp, err := t.base.RoundTrip(withToken(req, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	t.s.Invalidate(ctx, tok) // whether or not we retry, the next request should not carry tok
	if replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil; !replayable {
		return resp, nil
	}
	tok2, err := t.s.Token(ctx)
	if err != nil || tok2.AccessToken == tok.AccessToken {
		return resp, nil // nothing better to try: the caller gets the API's answer
	}
	retry := withToken(req, tok2)
	if req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		retry.Body = body
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // let the connection be reused
	resp.Body.Close()
	return t.base.RoundTrip(retry)
}

// withToken returns a copy of req carrying tok: a RoundTripper must not modify its request.
func withToken(req *http.Request, tok *Token) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return r
}
