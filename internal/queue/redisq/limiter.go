package redisq

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/linkbatch/linkbatch/internal/queue"
)

// LimiterKeyPrefix starts the name of a tenant's shared limit; the
// tenant's domain follows it. redis_rate stores the limit under that name
// prefixed with "rate:" (see [Limiter.Key]).
const LimiterKeyPrefix = "linkbatch:rate:"

// Limiter is a rate limit held in Redis and shared by every linkbatch
// process that sends to one tenant through it: a ratelimit.Shared. It is
// GCRA (redis_rate), one key per tenant (see Key); the
// limit each wait applies is the one its caller passes, so the processes'
// latest views of the tenant's limit take turns setting it. A Limiter is
// safe for concurrent use.
type Limiter struct {
	c       *redis.Client // closed by Close when owned
	own     bool
	lim     *redis_rate.Limiter
	key     string
	onError func(error)
	failing atomic.Bool
}

// NewLimiter returns the limit of tenant held in the Redis of c. onError,
// when not nil, is told of a failing store the first time a wait fails
// after a success (not on every wait); it must be safe for concurrent use.
func NewLimiter(c *redis.Client, tenant string, onError func(error)) *Limiter {
	return &Limiter{c: c, lim: redis_rate.NewLimiter(c), key: LimiterKeyPrefix + tenant, onError: onError}
}

// OpenLimiter connects to the Redis of cfg, checks it answers and returns
// the limit of tenant held there (see NewLimiter), with a connection of
// its own that Close closes. Errors name the server by cfg.String, which
// masks the password.
func OpenLimiter(ctx context.Context, cfg queue.Config, tenant string, onError func(error)) (*Limiter, error) {
	if cfg.Kind != queue.Redis {
		return nil, fmt.Errorf("redis: %s is not a Redis URL", cfg)
	}
	c := redis.NewClient(options(cfg))
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis %s: %w", cfg, err)
	}
	l := NewLimiter(c, tenant, onError)
	l.own = true
	return l, nil
}

// Key returns the Redis key the limit is stored under:
// "rate:linkbatch:rate:" and the tenant's domain.
func (l *Limiter) Key() string { return "rate:" + l.key }

// maxPoll is the longest Wait sleeps before it asks Redis again.
const maxPoll = 100 * time.Millisecond

// Wait blocks until the limit lets one request through at rate requests
// per second with bursts of burst, sleeping out Redis's retry-after
// (at most maxPoll) between tries. It returns ctx.Err() as soon as ctx is done, or the
// store's error.
func (l *Limiter) Wait(ctx context.Context, rate float64, burst int) error {
	if rate <= 0 {
		return fmt.Errorf("shared limit %s: rate %v must be > 0", l.key, rate)
	}
	limit := redis_rate.Limit{Rate: 1, Burst: max(burst, 1), Period: time.Duration(float64(time.Second) / rate)}
	for {
		res, err := l.lim.Allow(ctx, l.key, limit)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			err = fmt.Errorf("shared limit %s: %w", l.key, err)
			if !l.failing.Swap(true) && l.onError != nil {
				l.onError(err)
			}
			return err
		}
		l.failing.Store(false)
		if res.Allowed > 0 {
			return nil
		}
		// Asked again within maxPoll: another process may have set a
		// faster limit meanwhile, which a sleep computed for this one
		// would not see.
		d := min(max(res.RetryAfter, time.Millisecond), maxPoll)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes the connection when OpenLimiter opened it.
func (l *Limiter) Close() error {
	if !l.own {
		return nil
	}
	return l.c.Close()
}
