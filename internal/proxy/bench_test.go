package proxy_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/proxy"
)

// BenchmarkProxyHit measures cached answers per second over loopback HTTP with keep-alive connections, next to
// the ceiling of the same load against a trivial net/http handler (it reads the body and writes a token-sized
// JSON answer), in the same run. Read the two as a ratio: the target is a proxy at ≥ 50% of the trivial handler.
//
//	go test -run XXX -bench ProxyHit -benchtime 5s ./internal/proxy
func BenchmarkProxyHit(b *testing.B) {
	answer := []byte(`{"access_token":"` + strings.Repeat("x", 800) + `","token_type":"Bearer","expires_in":86400}` + "\n")
	trivial := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	})
	up := newUpstream(b)
	p, err := proxy.New(proxy.Config{Upstream: up.URL + "/oauth/token"})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		handler http.Handler
	}{
		{"trivial", trivial},
		{"proxy", p.Handler()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := httptest.NewServer(bc.handler)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			const body = "grant_type=client_credentials&audience=https%3A%2F%2Fapi.example.com%2Fv1"
			post := func() error {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(clientID, clientSecret)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
				}
				return nil
			}
			if err := post(); err != nil { // the proxy's one miss
				b.Fatal(err)
			}
			b.SetParallelism(16) // 16 concurrent connections per CPU
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := post(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
	if n := up.calls.Load(); n != 1 {
		b.Errorf("%d upstream calls, want 1", n)
	}
}

// BenchmarkProxyVsTrivial is the same comparison as BenchmarkProxyHit as one load test: 32 keep-alive
// connections, the proxy and the trivial handler taking turns in 250 ms slices (20 pairs per iteration, the
// order alternating) so that both see the same noise of a shared machine. It reports both rates over the whole
// run, and the median over the pairs of the proxy's share of the trivial handler's rate, which a burst of other
// work on the machine during a few slices does not move.
//
//	go test -run XXX -bench ProxyVsTrivial -benchtime 1x ./internal/proxy
func BenchmarkProxyVsTrivial(b *testing.B) {
	answer := []byte(`{"access_token":"` + strings.Repeat("x", 800) + `","token_type":"Bearer","expires_in":86400}` + "\n")
	trivial := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	}))
	defer trivial.Close()
	up := newUpstream(b)
	// The request log is on, as in production, written to nowhere.
	p, err := proxy.New(proxy.Config{Upstream: up.URL + "/oauth/token", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	prox := httptest.NewServer(p.Handler())
	defer prox.Close()

	const conns, slice, pairs = 32, 250 * time.Millisecond, 20
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	const body = "grant_type=client_credentials&audience=https%3A%2F%2Fapi.example.com%2Fv1"
	// load sends requests to base on conns connections for d and returns the rate of 200 answers.
	load := func(base string, d time.Duration) float64 {
		var total atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		deadline := start.Add(d)
		for range conns {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(clientID, clientSecret)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						total.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return float64(total.Load()) / time.Since(start).Seconds()
	}
	load(prox.URL, 200*time.Millisecond) // warm up: the one miss, and the connections
	load(trivial.URL, 200*time.Millisecond)
	b.ResetTimer()
	var sumTrivial, sumProxy float64
	var shares []float64
	for range b.N {
		for i := range pairs {
			var rt, rp float64
			if i%2 == 0 {
				rt = load(trivial.URL, slice)
				rp = load(prox.URL, slice)
			} else {
				rp = load(prox.URL, slice)
				rt = load(trivial.URL, slice)
			}
			sumTrivial, sumProxy = sumTrivial+rt, sumProxy+rp
			shares = append(shares, 100*rp/rt)
		}
	}
	slices.Sort(shares)
	b.ReportMetric(sumTrivial/float64(len(shares)), "trivial-req/s")
	b.ReportMetric(sumProxy/float64(len(shares)), "proxy-req/s")
	b.ReportMetric(shares[len(shares)/2], "median-%-of-trivial")
	if n := up.calls.Load(); n != 1 {
		b.Errorf("%d upstream calls, want 1", n)
	}
}
