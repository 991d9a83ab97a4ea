package redisq

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/linkbatch/linkbatch/internal/queue/queuetest"
)

// startRedis starts a real redis-server for the test (see
// queuetest.StartRedis).
func startRedis(t testing.TB) (string, *redis.Client) { return queuetest.StartRedis(t) }
