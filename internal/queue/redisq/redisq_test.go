package redisq

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/internal/queue/queuetest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

const stream = "links"

// config is the queue of the test's server, with a short claim-idle.
func config(t testing.TB, addr, consumer string) queue.Config {
	t.Helper()
	cfg, err := queue.Parse(fmt.Sprintf("redis://%s/0?stream=%s&group=g&consumer=%s&claim-idle=300ms&max-deliveries=3", addr, stream, consumer), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// xadd adds one entry with the fields (name, value, ...) and returns its id.
func xadd(t testing.TB, c *redis.Client, fields ...string) string {
	t.Helper()
	vals := make([]any, len(fields))
	for i, f := range fields {
		vals[i] = f
	}
	id, err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: stream, Values: vals}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func source(t testing.TB, cfg queue.Config, opt queue.Options) *queue.Source {
	t.Helper()
	opt.Poll = 50 * time.Millisecond
	src, _, err := NewSource(t.Context(), cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// pending returns the group's pending entries.
func pending(t testing.TB, c *redis.Client) int64 {
	t.Helper()
	p, err := c.XPending(t.Context(), stream, "g").Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

// deadIDs returns the request ids in the dead-letter stream, with reasons.
func deadIDs(t testing.TB, c *redis.Client) map[string]string {
	t.Helper()
	msgs, err := c.XRange(t.Context(), stream+":dead", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range msgs {
		got[m.Values[FieldMessageID].(string)] = m.Values[FieldReason].(string)
	}
	return got
}

// broker is the Redis stream of one test, read by the group "g".
type broker struct {
	addr string
	c    *redis.Client
}

func (b broker) Config(t testing.TB, consumer string) queue.Config {
	return config(t, b.addr, consumer)
}

func (b broker) Add(t testing.TB, fields ...string) string { return xadd(t, b.c, fields...) }

func (b broker) AddPoison(t testing.TB) map[string]string {
	return map[string]string{
		xadd(t, b.c, "primary_user_id", "auth0|x", "secondary", "github|y"):                                      "not a column",
		xadd(t, b.c, "primary_user_id", "not-an-id", "secondary_user_id", "github|y"):                            "primary_user_id",
		xadd(t, b.c, "primary_user_id", "auth0|x", "secondary_provider", "github", "link_with", "a.b.c"):         "secondary_provider",
		xadd(t, b.c, "primary_user_id", "auth0|x", "secondary_user_id", "github|y", "connection_id", "bogus-id"): "connection_id",
	}
}

func (b broker) Source(t testing.TB, cfg queue.Config, opt queue.Options) *queue.Source {
	return source(t, cfg, opt)
}

func (b broker) Abandon(t testing.TB, name string, n int) {
	t.Helper()
	dead, err := Open(t.Context(), config(t, b.addr, name), false)
	if err != nil {
		t.Fatal(err)
	}
	if ds, err := dead.Fetch(t.Context(), n, 0); err != nil || len(ds) != n {
		t.Fatalf("the dying consumer took %d entries (%v), want %d", len(ds), err, n)
	}
	dead.Close()
}

// Unsettled counts the group's pending entries and those it has not read.
func (b broker) Unsettled(t testing.TB) int {
	t.Helper()
	groups, err := b.c.XInfoGroups(t.Context(), stream).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range groups {
		n += int(g.Pending + max(g.Lag, 0))
	}
	return n
}

func (b broker) Untouched(t testing.TB) error {
	t.Helper()
	if groups, err := b.c.XInfoGroups(t.Context(), stream).Result(); err != nil || len(groups) != 0 {
		return fmt.Errorf("groups %v (%v), want none", groups, err)
	}
	if n, err := b.c.XLen(t.Context(), stream+":dead").Result(); err != nil || n != 0 {
		return fmt.Errorf("%d dead letters (%v), want none", n, err)
	}
	return nil
}

// TestScenarios runs what every broker must do (queuetest.RunScenarios)
// against a real redis-server.
func TestScenarios(t *testing.T) {
	queuetest.RunScenarios(t, func(t *testing.T) queuetest.Broker {
		addr, c := startRedis(t)
		return broker{addr: addr, c: c}
	})
}

// TestDeadLetterReasons: the dead-letter stream says why each entry is
// there: a poison entry, a request that failed on its last delivery, and
// an entry its consumers died on more often than max-deliveries, which goes
// there at once with an invalid result.
func TestDeadLetterReasons(t *testing.T) {
	addr, c := startRedis(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	srv.Seed("auth0|down", "github|down", "auth0|crashy", "github|crashy")
	cfg := config(t, addr, "c1")
	crashy := xadd(t, c, "primary_user_id", "auth0|crashy", "secondary_user_id", "github|crashy")
	if _, err := Open(t.Context(), cfg, false); err != nil { // creates the group
		t.Fatal(err)
	}
	// Consumers died on crashy 4 times (max-deliveries is 3).
	if err := c.XReadGroup(t.Context(), &redis.XReadGroupArgs{Group: "g", Consumer: "ghost", Streams: []string{stream, ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := c.XClaim(t.Context(), &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: "ghost", Messages: []string{crashy}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	down := xadd(t, c, "primary_user_id", "auth0|down", "secondary_user_id", "github|down")
	poison := xadd(t, c, "primary_user_id", "auth0|x", "secondary", "github|y")

	r := queuetest.Runner(t, srv, 2, queuetest.FailFor{Next: srv.Client().Transport, ID: "auth0|down"})
	path := queuetest.ResultsPath(t)
	if _, err := r.RunSource(t.Context(), source(t, cfg, queue.Options{Drain: true}), queuetest.Sink(t, path)); err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	if rs := queuetest.Results(t, path)[crashy]; len(rs) != 1 || rs[0].Status != batch.StatusInvalid || !strings.Contains(rs[0].Error, "max-deliveries") {
		t.Errorf("crashy: %+v, want one invalid result naming max-deliveries", rs)
	}
	dead := deadIDs(t, c)
	if len(dead) != 3 {
		t.Errorf("dead letters %v, want down, crashy and the poison entry", dead)
	}
	for id, want := range map[string]string{down: "failed on delivery 3 of 3", crashy: "more than max-deliveries 3", poison: "poison: "} {
		if !strings.Contains(dead[id], want) {
			t.Errorf("dead letter %s: reason %q, want %q in it", id, dead[id], want)
		}
	}
	if n := pending(t, c); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
}

// TestResultsStream: results published to a stream go with the
// acknowledgements: one entry per request, message_id included, dead
// letters too; a run killed between a result and its acknowledgement
// leaves neither, and the next run publishes the one result.
func TestResultsStream(t *testing.T) {
	addr, c := startRedis(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	var ids []string
	for i := range 8 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		ids = append(ids, xadd(t, c, "primary_user_id", p, "secondary_user_id", s))
	}
	poison := xadd(t, c, "primary_user_id", "nope")
	ids = append(ids, poison)
	cfg := config(t, addr, "c1")
	run := func(crash bool) error {
		src, b, err := NewSource(t.Context(), cfg, queue.Options{Drain: true, Poll: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		sink, err := b.PublishResults("results")
		if err != nil {
			t.Fatal(err)
		}
		var s batch.Source = src
		if crash {
			s = &queuetest.CrashAck{Source: src}
		}
		_, err = queuetest.Runner(t, srv, 2, nil).RunSource(t.Context(), s, sink)
		return err
	}
	if err := run(true); !errors.Is(err, queuetest.ErrCrash) {
		t.Fatalf("first run: %v, want the crash", err)
	}
	if err := run(false); err != nil {
		t.Fatalf("second run: %v", err)
	}
	msgs, err := c.XRange(t.Context(), "results", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]map[string]any{}
	for _, m := range msgs {
		id, _ := m.Values["message_id"].(string)
		got[id] = append(got[id], m.Values)
	}
	for _, id := range ids {
		if len(got[id]) != 1 {
			t.Errorf("message %s: %d results published, want 1", id, len(got[id]))
			continue
		}
		want := "linked"
		if id == poison {
			want = "invalid"
		}
		if st := got[id][0]["status"]; st != want && !(st == "already_linked" && id != poison) {
			t.Errorf("message %s: status %v, want %s", id, st, want)
		}
	}
	if len(msgs) != len(ids) {
		t.Errorf("%d results published, want %d", len(msgs), len(ids))
	}
	if n := pending(t, c); n != 0 {
		t.Errorf("%d entries pending", n)
	}
	if d := deadIDs(t, c); len(d) != 1 || d[poison] == "" {
		t.Errorf("dead letters %v, want the poison entry", d)
	}
}

// TestCloseLeavesGroupWhenIdle: a consumer that holds nothing leaves the
// group on Close; one that holds entries stays, so they can be claimed.
func TestCloseLeavesGroupWhenIdle(t *testing.T) {
	addr, c := startRedis(t)
	xadd(t, c, "primary_user_id", "auth0|a", "secondary_user_id", "github|b")
	idle, err := Open(t.Context(), config(t, addr, "idle"), false)
	if err != nil {
		t.Fatal(err)
	}
	busy, err := Open(t.Context(), config(t, addr, "busy"), false)
	if err != nil {
		t.Fatal(err)
	}
	if ds, err := busy.Fetch(t.Context(), 1, 0); err != nil || len(ds) != 1 {
		t.Fatalf("fetch: %d, %v", len(ds), err)
	}
	if ds, err := idle.Fetch(t.Context(), 1, 0); err != nil || len(ds) != 0 {
		t.Fatalf("fetch: %d, %v", len(ds), err)
	}
	idle.Close()
	busy.Close()
	cs, err := c.XInfoConsumers(t.Context(), stream, "g").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Name != "busy" || cs[0].Pending != 1 {
		t.Errorf("consumers %+v, want busy alone, with its entry", cs)
	}
}
