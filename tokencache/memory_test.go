package tokencache_test

import (
	"testing"

	"github.com/gatehouse/gatehouse/tokencache"
	"github.com/gatehouse/gatehouse/tokencache/cachetest"
)

func TestMemoryCache(t *testing.T) {
	cachetest.TestCache(t, func(t *testing.T) tokencache.Cache { return tokencache.NewMemoryCache() })
}
