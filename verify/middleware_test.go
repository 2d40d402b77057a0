package verify_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/verify"
)

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header  string
		want    string
		wantErr error
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", nil},
		{"bearer abc.def.ghi", "abc.def.ghi", nil},
		{"BEARER  abc.def.ghi ", "abc.def.ghi", nil},
		{"Bearer mF_9.B5f-4.1JqM", "mF_9.B5f-4.1JqM", nil},
		{"Bearer abc+/~==", "abc+/~==", nil},
		{"", "", verify.ErrNoToken},
		{"Basic dXNlcjpwYXNz", "", verify.ErrNoToken},
		{"Bearerabc", "", verify.ErrNoToken},
		{"Bearer", "", verify.ErrMalformed},
		{"Bearer   ", "", verify.ErrMalformed},
		{"Bearer a b", "", verify.ErrMalformed},
		{"Bearer a,b", "", verify.ErrMalformed},
		{"Bearer ===", "", verify.ErrMalformed},
		{"Bearer a=b", "", verify.ErrMalformed},
		{"Bearer \"abc\"", "", verify.ErrMalformed},
	} {
		got, err := verify.BearerToken(tc.header)
		if got != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.header, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestMiddleware(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	now := clk.Now()
	good := token(rsaKey, now) // scope "read write"

	var seen *verify.Claims
	protected := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := verify.ClaimsFrom(r.Context())
		if !ok {
			t.Error("no claims in the context")
		}
		seen = c
		io.WriteString(w, "hello "+c.Subject)
	})
	var refused []error
	opts := []verify.MiddlewareOption{verify.Realm("api"), verify.OnError(func(r *http.Request, err error) { refused = append(refused, err) })}
	type response struct {
		Status          int
		WWWAuthenticate string
		Body            string
	}
	for _, tc := range []struct {
		name    string
		opts    []verify.MiddlewareOption
		headers []string // Authorization values
		url     string
		want    response
	}{
		{"good token", nil, []string{"Bearer " + good}, "/", response{200, "", "hello svc-one"}},
		{"lower-case scheme", nil, []string{"bearer " + good}, "/", response{200, "", "hello svc-one"}},
		{"scopes held", []verify.MiddlewareOption{verify.RequireScopes("read", "write")}, []string{"Bearer " + good}, "/", response{200, "", "hello svc-one"}},
		{"one of the scopes held", []verify.MiddlewareOption{verify.RequireAnyScope("admin", "write")}, []string{"Bearer " + good}, "/", response{200, "", "hello svc-one"}},
		{"no token", nil, nil, "/", response{401, `Bearer realm="api"`, "Unauthorized\n"}},
		{"another scheme", nil, []string{"Basic dXNlcjpwYXNz"}, "/", response{401, `Bearer realm="api"`, "Unauthorized\n"}},
		{"token in the query string", nil, nil, "/?access_token=" + good, response{401, `Bearer realm="api"`, "Unauthorized\n"}},
		{"garbage", nil, []string{"Bearer abc"}, "/", response{401, `Bearer realm="api", error="invalid_token", error_description="the token is malformed"`, "Unauthorized\n"}},
		{"empty bearer", nil, []string{"Bearer "}, "/", response{401, `Bearer realm="api", error="invalid_token", error_description="the token is malformed"`, "Unauthorized\n"}},
		{"expired", nil, []string{"Bearer " + token(rsaKey, now, func(h, c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() })}, "/",
			response{401, `Bearer realm="api", error="invalid_token", error_description="the token has expired"`, "Unauthorized\n"}},
		{"wrong audience", nil, []string{"Bearer " + token(rsaKey, now, func(h, c map[string]any) { c["aud"] = "other" })}, "/",
			response{401, `Bearer realm="api", error="invalid_token", error_description="the token is for another audience"`, "Unauthorized\n"}},
		{"unknown kid", nil, []string{"Bearer " + token(rsaKey, now, func(h, c map[string]any) { h["kid"] = "../../etc/passwd" })}, "/",
			response{401, `Bearer realm="api", error="invalid_token", error_description="the token's signing key is unknown"`, "Unauthorized\n"}},
		{"scope missing", []verify.MiddlewareOption{verify.RequireScopes("read", "admin")}, []string{"Bearer " + good}, "/",
			response{403, `Bearer realm="api", error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="read admin"`, "Forbidden\n"}},
		{"none of the scopes", []verify.MiddlewareOption{verify.RequireAnyScope("admin", "root")}, []string{"Bearer " + good}, "/",
			response{403, `Bearer realm="api", error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="admin root"`, "Forbidden\n"}},
		{"two Authorization headers", nil, []string{"Bearer " + good, "Bearer " + good}, "/",
			response{400, `Bearer realm="api", error="invalid_request", error_description="more than one Authorization header"`, "Bad Request\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen, refused = nil, nil
			h := verify.Middleware(v, append(append([]verify.MiddlewareOption{}, opts...), tc.opts...)...)(protected)
			r := httptest.NewRequest("GET", tc.url, nil)
			for _, a := range tc.headers {
				r.Header.Add("Authorization", a)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			got := response{w.Code, w.Header().Get("WWW-Authenticate"), w.Body.String()}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
			if tc.want.Status == 200 {
				if seen == nil || seen.Subject != "svc-one" || !seen.HasScopes("read", "write") {
					t.Errorf("handler saw claims %+v", seen)
				}
				if len(refused) != 0 {
					t.Errorf("OnError called: %v", refused)
				}
				return
			}
			if seen != nil {
				t.Error("the handler ran")
			}
			if len(refused) != 1 {
				t.Errorf("OnError called %d times, want 1", len(refused))
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
		})
	}
}

func TestMiddlewareNoRealm(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	v := newVerifier(t, srv, newClock(), verify.Config{})
	h := verify.Middleware(v)(http.NotFoundHandler())
	for _, tc := range []struct{ auth, want string }{
		{"", "Bearer"},
		{"Bearer x.y.z", `Bearer error="invalid_token", error_description="the token is malformed"`},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if got := w.Header().Get("WWW-Authenticate"); w.Code != 401 || got != tc.want {
			t.Errorf("%q: %d %q, want 401 %q", tc.auth, w.Code, got, tc.want)
		}
	}
}

// TestMiddlewareJWKSDown: when the keys cannot be had, the answer is 503, not a verdict on the token.
func TestMiddlewareJWKSDown(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	srv.set(func(s *jwksServer) { s.status = http.StatusBadGateway })
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+token(rsaKey, clk.Now()))
	w := httptest.NewRecorder()
	verify.Middleware(v)(http.NotFoundHandler()).ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("got %d, headers %v", w.Code, w.Header())
	}
}

// otherCredential stands for a second kind of credential (an API key, say) beside JWTs: Middleware takes any
// TokenVerifier.
type otherCredential struct{ jwt verify.TokenVerifier }

func (o otherCredential) Verify(ctx context.Context, tok string) (*verify.Claims, error) {
	if strings.HasPrefix(tok, "key_") {
		return &verify.Claims{Subject: "key-owner", Scopes: []string{"read"}}, nil
	}
	return o.jwt.Verify(ctx, tok)
}

func TestMiddlewareOtherVerifier(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	h := verify.Middleware(otherCredential{v}, verify.RequireScopes("read"))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.ClaimsFrom(r.Context())
		io.WriteString(w, c.Subject)
	}))
	for auth, want := range map[string]string{"Bearer key_123": "key-owner", "Bearer " + token(rsaKey, clk.Now()): "svc-one"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 || w.Body.String() != want {
			t.Errorf("%s: %d %q, want 200 %q", auth[:20], w.Code, w.Body.String(), want)
		}
	}
}

func TestWriteErrorQuotes(t *testing.T) {
	w := httptest.NewRecorder()
	verify.WriteError(w, `a "quoted" \ realm`+"\n", &verify.ScopeError{Scopes: []string{"x"}})
	want := `Bearer realm="a \"quoted\" \\ realm", error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="x"`
	if got := w.Header().Get("WWW-Authenticate"); got != want || w.Code != 403 {
		t.Errorf("got %d %s\nwant 403 %s", w.Code, got, want)
	}
	if !errors.Is(&verify.ScopeError{}, verify.ErrInsufficientScope) {
		t.Error("ScopeError is not ErrInsufficientScope")
	}
	if _, ok := verify.ClaimsFrom(context.Background()); ok {
		t.Error("claims in an empty context")
	}
}
