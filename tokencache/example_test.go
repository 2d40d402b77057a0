package tokencache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/gatehouse/gatehouse/tokencache"
)

// Example gets an Auth0 machine-to-machine token the way Auth0 documents it: a JSON body with the client
// credentials and the API's audience. The Source caches it: the second call makes no request.
func Example() {
	auth0 := fakeAuth0() // stands in for https://YOUR_TENANT.auth0.com
	defer auth0.Close()

	src, err := tokencache.New(tokencache.Config{
		TokenURL:     auth0.URL + "/oauth/token",
		ClientID:     "YOUR_CLIENT_ID",
		ClientSecret: "YOUR_CLIENT_SECRET",
		Audience:     "https://api.example.com/v1",
		AuthStyle:    tokencache.AuthBody,
		JSONBody:     true,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		tok, err := src.Token(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(tok.TokenType, tok.AccessToken)
	}
	fmt.Println("requests to Auth0:", src.Stats().Fetches)
	// Output:
	// Bearer m2m-token-1
	// Bearer m2m-token-1
	// requests to Auth0: 1
}

// ExampleSource_Transport calls an API with an http.Client that adds the token to every request. Had the API
// answered 401, the Transport would have fetched a new token and retried once.
func ExampleSource_Transport() {
	auth0 := fakeAuth0()
	defer auth0.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "API saw %q", r.Header.Get("Authorization"))
	}))
	defer api.Close()

	src, err := tokencache.New(tokencache.Config{
		TokenURL:     auth0.URL + "/oauth/token",
		ClientID:     "YOUR_CLIENT_ID",
		ClientSecret: "YOUR_CLIENT_SECRET",
		Audience:     "https://api.example.com/v1",
		AuthStyle:    tokencache.AuthBody,
		JSONBody:     true,
	})
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: src.Transport(nil)}

	resp, err := client.Get(api.URL + "/things")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: API saw "Bearer m2m-token-1"
}

// ExampleNewMemoryCache shares one token between two Sources with the same configuration. With
// rediscache.New instead of NewMemoryCache, the Sources could be in different processes or machines (such as
// Lambda instances): only one of them pays for the token.
func ExampleNewMemoryCache() {
	auth0 := fakeAuth0()
	defer auth0.Close()

	cfg := tokencache.Config{
		TokenURL:     auth0.URL + "/oauth/token",
		ClientID:     "YOUR_CLIENT_ID",
		ClientSecret: "YOUR_CLIENT_SECRET",
		Audience:     "https://api.example.com/v1",
		Cache:        tokencache.NewMemoryCache(),
	}
	first, err := tokencache.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	second, err := tokencache.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	a, _ := first.Token(ctx)
	b, _ := second.Token(ctx)
	fmt.Println(a.AccessToken, b.AccessToken)
	fmt.Println("fetched by the first:", first.Stats().Fetches)
	fmt.Println("fetched by the second:", second.Stats().Fetches, "from the cache:", second.Stats().SharedHits)
	// Output:
	// m2m-token-1 m2m-token-1
	// fetched by the first: 1
	// fetched by the second: 0 from the cache: 1
}

// ExampleSource_Stats reads the counters, and counts upstream requests with a hook (a Prometheus counter's Inc
// would fit there).
func ExampleSource_Stats() {
	auth0 := fakeAuth0()
	defer auth0.Close()

	var requests int
	src, err := tokencache.New(tokencache.Config{
		TokenURL:     auth0.URL + "/oauth/token",
		ClientID:     "YOUR_CLIENT_ID",
		ClientSecret: "YOUR_CLIENT_SECRET",
		Hooks: tokencache.Hooks{
			Fetch: func(_ time.Duration, err error) { requests++ },
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	for range 100 {
		if _, err := src.Token(context.Background()); err != nil {
			log.Fatal(err)
		}
	}
	st := src.Stats()
	fmt.Printf("hits %d, misses %d, fetches %d, errors %d; hook saw %d\n", st.Hits, st.Misses, st.Fetches, st.FetchErrors, requests)
	// Output: hits 99, misses 1, fetches 1, errors 0; hook saw 1
}

// fakeAuth0 answers client-credentials requests like Auth0's /oauth/token.
func fakeAuth0() *httptest.Server {
	n := 0
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": fmt.Sprintf("m2m-token-%d", n),
			"expires_in":   86400,
			"token_type":   "Bearer",
		})
	}))
}
