package redisq

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/internal/queue/queuetest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// addPairs adds n requests for fresh pairs seeded on srv, pipelined, and
// returns their ids.
func addPairs(t testing.TB, c *redis.Client, srv *linkertest.Server, n int) []string {
	t.Helper()
	cmds := make([]*redis.StringCmd, n)
	_, err := c.Pipelined(t.Context(), func(p redis.Pipeliner) error {
		for i := range n {
			pr, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
			srv.Seed(pr, s)
			cmds[i] = p.XAdd(t.Context(), &redis.XAddArgs{Stream: stream, Values: []any{"primary_user_id", pr, "secondary_user_id", s}})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i, cmd := range cmds {
		ids[i] = cmd.Val()
	}
	return ids
}

// TestTwoConsumersOneKilled: two consumers of one group drain a stream
// together; one is killed mid-run (its connection gone, its rows in flight
// cancelled, nothing handed back). The other claims what it left and
// finishes: every request has a result; one the killed consumer linked
// without writing its result, or wrote without acknowledging it, is
// already linked in the other's results; every pair is linked once and
// nothing is left pending.
func TestTwoConsumersOneKilled(t *testing.T) {
	addr, c := startRedis(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	srv.SetFaults(linkertest.Faults{Latency: 10 * time.Millisecond})
	ids := addPairs(t, c, srv, 200)

	paths := []string{queuetest.ResultsPath(t), queuetest.ResultsPath(t)}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	kill := make(chan struct{})
	ctxA, cancelA := context.WithCancel(t.Context())
	defer cancelA()

	cfgA := config(t, addr, "a")
	srcA, brokerA, err := NewSource(t.Context(), cfgA, queue.Options{Drain: true, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rA := queuetest.Runner(t, srv, 4, nil)
	rA.Kill = kill
	wg.Go(func() { _, errs[0] = rA.RunSource(ctxA, srcA, queuetest.Sink(t, paths[0])) })

	srcB := source(t, config(t, addr, "b"), queue.Options{Drain: true})
	wg.Go(func() {
		_, errs[1] = queuetest.Runner(t, srv, 4, nil).RunSource(t.Context(), srcB, queuetest.Sink(t, paths[1]))
	})

	deadline := time.Now().Add(10 * time.Second)
	for srcA.Stats().Acked < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// The kill: the connection goes first (no heartbeat, no ack, nothing
	// handed back), then the rows in flight are cancelled.
	brokerA.Client().Close()
	close(kill)
	cancelA()
	wg.Wait()
	if errs[0] == nil {
		t.Error("the killed consumer's run ended without an error")
	}
	if errs[1] != nil {
		t.Fatalf("the surviving consumer: %v", errs[1])
	}
	a, b := queuetest.Results(t, paths[0]), queuetest.Results(t, paths[1])
	if len(a) == 0 || len(b) == 0 {
		t.Fatalf("results: %d by a, %d by b; want both to have worked", len(a), len(b))
	}
	twice, inFlight := 0, 0
	for _, id := range ids {
		rs := append(a[id], b[id]...)
		switch {
		case len(rs) == 1 && rs[0].Status == batch.StatusLinked:
		case len(rs) == 1 && len(b[id]) == 1 && rs[0].Status == batch.StatusAlreadyLinked:
			inFlight++ // linked by a when it was killed, before a result
		case len(rs) == 2 && len(a[id]) == 1 && a[id][0].Status == batch.StatusLinked && b[id][0].Status == batch.StatusAlreadyLinked:
			twice++
		default:
			t.Errorf("message %s: a wrote %+v, b wrote %+v", id, a[id], b[id])
		}
	}
	if n := pending(t, c); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
	if st := srv.Stats(); st.LinksApplied != 200 || st.DoubleLinks != 0 {
		t.Errorf("tenant: %d links applied, %d double links; want 200, 0", st.LinksApplied, st.DoubleLinks)
	}
	t.Logf("a wrote %d results, b %d; %d requests have a result from each, %d were in flight in a", len(a), len(b), twice, inFlight)
}
