package forwardauth

import (
	"github.com/prometheus/client_golang/prometheus"
)

// result is the outcome of a check, the result label of gatehouse_authorize_decisions_total.
type result int

const (
	resultAllow             result = iota // 200
	resultNoToken                         // 401 without error: no bearer token
	resultInvalidToken                    // 401 invalid_token
	resultInsufficientScope               // 403 insufficient_scope
	resultNoRule                          // 403: no rule matches (deny by default)
	resultBadRequest                      // 403: the original request could not be read
	resultError                           // 503: the issuer's keys, or the API key check, are unavailable
	numResults
)

func (r result) String() string {
	return [...]string{"allow", "no_token", "invalid_token", "insufficient_scope", "no_rule", "bad_request", "error"}[r]
}

// noRule is the rule label of decisions no rule made.
const noRule = "none"

// Metrics are the Prometheus metrics of `gatehouse authorize`.
type Metrics struct {
	decisions     *prometheus.CounterVec
	cacheHits     prometheus.Counter
	verifications prometheus.Counter
	jwksOK        prometheus.Counter
	jwksFailed    prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg:
//
//	gatehouse_authorize_decisions_total{result, rule}   checks answered; result is allow, no_token, invalid_token,
//	                                                    insufficient_scope, no_rule, bad_request or error
//	gatehouse_authorize_cache_hits_total                checks answered from the cache of verified tokens
//	gatehouse_authorize_token_verifications_total       tokens verified (signature and claims) and API keys
//	                                                    checked: the cache misses
//	gatehouse_authorize_jwks_refreshes_total{result}    JWKS fetches, ok or error (JWKSRefreshed)
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authorize_decisions_total",
			Help: "Forward-auth checks answered, by result and by the name of the rule that decided (none: no rule matched).",
		}, []string{"result", "rule"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_authorize_cache_hits_total",
			Help: "Checks whose token was found in the cache of verified tokens.",
		}),
		verifications: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_authorize_token_verifications_total",
			Help: "Tokens verified (signature and claims), or API keys checked, because the cache did not hold them.",
		}),
	}
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_authorize_jwks_refreshes_total",
		Help: "Fetches of the issuer's JWKS, by result: ok or error (the last good set stays in use).",
	}, []string{"result"})
	m.jwksOK, m.jwksFailed = refreshes.WithLabelValues("ok"), refreshes.WithLabelValues("error")
	reg.MustRegister(m.decisions, m.cacheHits, m.verifications, refreshes)
	return m
}

// JWKSRefreshed counts a JWKS refresh in gatehouse_authorize_jwks_refreshes_total: ok when err is nil, else error.
// It is verify.Config.OnRefresh.
func (m *Metrics) JWKSRefreshed(err error) {
	if err == nil {
		m.jwksOK.Inc()
	} else {
		m.jwksFailed.Inc()
	}
}
