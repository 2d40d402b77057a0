package limit

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// DefaultMaxKeys is how many keys a Memory holds at most unless told otherwise: about 10 MB.
const DefaultMaxKeys = 100_000

// numShards is how many independently locked parts a Memory has; a power of two.
const numShards = 64

// Memory is a Limiter in process memory, for one instance. It is safe for concurrent use; Allow and Check do not
// allocate, except to add a key.
//
// Its memory is bounded: when a part of it is full, adding a key first forgets the keys whose TAT has passed
// (they hold no state) and, if none has, the key whose TAT is nearest, which loses the least: that key starts
// again with a full allowance. A flood of distinct keys therefore cannot grow it, and can only make it forget
// the keys closest to being forgotten anyway.
type Memory struct {
	seed     maphash.Seed
	perShard int
	shards   [numShards]shard
}

type shard struct {
	mu  sync.Mutex
	tat map[string]int64 // key → theoretical arrival time, Unix nanoseconds
	_   [48]byte         // one shard per cache line
}

// NewMemory returns an empty Memory holding at most maxKeys keys (DefaultMaxKeys when maxKeys <= 0).
func NewMemory(maxKeys int) *Memory {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	m := &Memory{seed: maphash.MakeSeed(), perShard: max(1, (maxKeys+numShards-1)/numShards)}
	for i := range m.shards {
		m.shards[i].tat = make(map[string]int64)
	}
	return m
}

func (m *Memory) shard(key string) *shard {
	return &m.shards[maphash.String(m.seed, key)&(numShards-1)]
}

// Allow implements Limiter. It never returns an error.
func (m *Memory) Allow(_ context.Context, key string, rate Rate, now time.Time) (bool, time.Duration, error) {
	if rate.unlimited() {
		return true, 0, nil
	}
	n := now.UnixNano()
	s := m.shard(key)
	s.mu.Lock()
	tat, found := s.tat[key]
	ok, next, wait := gcra(tat, n, rate)
	if ok {
		if !found && len(s.tat) >= m.perShard {
			s.evict(n, m.perShard)
		}
		s.tat[key] = next
	}
	s.mu.Unlock()
	return ok, wait, nil
}

// Check implements Limiter. It never returns an error.
func (m *Memory) Check(_ context.Context, key string, rate Rate, now time.Time) (bool, time.Duration, error) {
	if rate.unlimited() {
		return true, 0, nil
	}
	s := m.shard(key)
	s.mu.Lock()
	tat := s.tat[key]
	s.mu.Unlock()
	ok, _, wait := gcra(tat, now.UnixNano(), rate)
	return ok, wait, nil
}

// Len returns how many keys m holds, including keys whose TAT has passed and that are not yet forgotten.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.tat)
		s.mu.Unlock()
	}
	return n
}

// evict makes room for a key in a full shard: it drops every key whose TAT has passed and, if that leaves the
// shard full, the key whose TAT is nearest. The caller holds s.mu.
func (s *shard) evict(now int64, capacity int) {
	nearest, nearestTAT := "", int64(math.MaxInt64)
	for k, t := range s.tat {
		if t <= now {
			delete(s.tat, k)
		} else if t < nearestTAT {
			nearest, nearestTAT = k, t
		}
	}
	if len(s.tat) >= capacity {
		delete(s.tat, nearest)
	}
}
