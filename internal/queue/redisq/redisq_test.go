package redisq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// TestDrainAccountsForEveryRequest drains a stream of valid, repeated,
// poison and already-linked requests: every request ends with exactly one
// result, nothing is left pending, the poison ones are in the dead letters,
// every valid pair is linked once, and two requests for one pair are never
// sent at the same moment.
func TestDrainAccountsForEveryRequest(t *testing.T) {
	addr, c := startRedis(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	srv.SetFaults(linkertest.Faults{Latency: 20 * time.Millisecond})
	want := map[string]batch.Status{}
	for i := range 30 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		want[xadd(t, c, "primary_user_id", p, "secondary_user_id", s)] = batch.StatusLinked
	}
	// The same pair 6 more times, back to back: the first links, the others
	// find it linked.
	srv.Seed("auth0|dup", "github|dup")
	var dups []string
	for range 6 {
		dups = append(dups, xadd(t, c, "primary_user_id", "auth0|dup", "secondary_user_id", "github|dup"))
	}
	// Linked by an earlier run.
	srv.Seed("auth0|old", "github|old")
	queuetest.Link(t, srv, "auth0|old", "github|old")
	want[xadd(t, c, "primary_user_id", "auth0|old", "secondary_user_id", "github|old")] = batch.StatusAlreadyLinked
	poison := map[string]string{
		xadd(t, c, "primary_user_id", "auth0|x", "secondary", "github|y"):                                      "not a column",
		xadd(t, c, "primary_user_id", "not-an-id", "secondary_user_id", "github|y"):                            "primary_user_id",
		xadd(t, c, "primary_user_id", "auth0|x", "secondary_provider", "github", "link_with", "a.b.c"):         "secondary_provider",
		xadd(t, c, "primary_user_id", "auth0|x", "secondary_user_id", "github|y", "connection_id", "bogus-id"): "connection_id",
	}
	for id := range poison {
		want[id] = batch.StatusInvalid
	}

	probe := &queuetest.Probe{Next: srv.Client().Transport}
	r := queuetest.Runner(t, srv, 8, probe)
	path := queuetest.ResultsPath(t)
	src := source(t, config(t, addr, "c1"), queue.Options{Drain: true})
	sum, err := r.RunSource(t.Context(), src, queuetest.Sink(t, path))
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}

	got := queuetest.Results(t, path)
	for id, st := range want {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != st {
			t.Errorf("message %s: results %+v, want one %s", id, rs, st)
		}
	}
	linked := 0
	for _, id := range dups {
		rs := got[id]
		if len(rs) != 1 {
			t.Errorf("message %s: %d results, want 1", id, len(rs))
			continue
		}
		switch rs[0].Status {
		case batch.StatusLinked:
			linked++
		case batch.StatusAlreadyLinked:
		default:
			t.Errorf("repeated pair, message %s: %s (%s), want linked or already_linked", id, rs[0].Status, rs[0].Error)
		}
	}
	if linked != 1 {
		t.Errorf("the repeated pair was linked by %d messages, want 1", linked)
	}
	if n := len(got); n != len(want)+len(dups) {
		t.Errorf("%d messages have results, want %d", n, len(want)+len(dups))
	}
	for id, field := range poison {
		if rs := got[id]; len(rs) == 1 && !strings.Contains(rs[0].Error, field) {
			t.Errorf("poison message %s: error %q, want it to name %s", id, rs[0].Error, field)
		}
	}
	dead := deadIDs(t, c)
	if len(dead) != len(poison) {
		t.Errorf("dead letters %v, want the %d poison messages", dead, len(poison))
	}
	for id := range poison {
		if !strings.HasPrefix(dead[id], "poison: ") {
			t.Errorf("poison message %s: dead letter reason %q", id, dead[id])
		}
	}
	if n := pending(t, c); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
	if m := probe.Max(); m != 1 {
		t.Errorf("%d link requests for one primary were in flight at once, want 1", m)
	}
	st := srv.Stats()
	if st.LinksApplied != 32 || st.DoubleLinks != 0 {
		t.Errorf("tenant: %d links applied, %d double links; want 32 (30 pairs, the repeated one once, the earlier run's), 0", st.LinksApplied, st.DoubleLinks)
	}
	if sum.Rows != len(want)+len(dups) || sum.Remaining != 0 {
		t.Errorf("summary rows %d remaining %d, want %d, 0", sum.Rows, sum.Remaining, len(want)+len(dups))
	}
	if s := src.Stats(); s.DeadLettered != int64(len(poison)) || s.InFlight != 0 || s.Held != 0 {
		t.Errorf("source stats %+v", s)
	}
}

// TestDeadConsumerEntriesClaimed: a consumer that read entries and died
// without acknowledging them leaves them pending; another consumer of the
// group, draining, claims them once idle past claim-idle and finishes them.
func TestDeadConsumerEntriesClaimed(t *testing.T) {
	addr, c := startRedis(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	var ids []string
	for i := range 20 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		ids = append(ids, xadd(t, c, "primary_user_id", p, "secondary_user_id", s))
	}
	// The consumer that dies: it reads 12 entries and stops there.
	dead, err := Open(t.Context(), config(t, addr, "dies"), false)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := dead.Fetch(t.Context(), 12, 0)
	if err != nil || len(ds) != 12 {
		t.Fatalf("the dying consumer fetched %d entries (%v), want 12", len(ds), err)
	}
	dead.Close()

	path := queuetest.ResultsPath(t)
	src := source(t, config(t, addr, "lives"), queue.Options{Drain: true})
	if _, err := queuetest.Runner(t, srv, 4, nil).RunSource(t.Context(), src, queuetest.Sink(t, path)); err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	got := queuetest.Results(t, path)
	for _, id := range ids {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: %+v, want one linked", id, rs)
		}
	}
	if n := pending(t, c); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
}

// crashAck wraps a source so that the first acknowledgement fails, as a
// process killed between writing a result and acknowledging it.
type crashAck struct {
	*queue.Source
	once sync.Once
}

var errCrash = errors.New("killed before the acknowledgement")

func (s *crashAck) Read(ctx context.Context) (batch.Row, batch.AckFunc, error) {
	row, ack, err := s.Source.Read(ctx)
	if ack == nil {
		return row, ack, err
	}
	return row, func(ctx context.Context) error {
		crashed := false
		s.once.Do(func() { crashed = true })
		if crashed {
			return errCrash
		}
		return ack(ctx)
	}, err
}

// TestRestartAfterCrashBeforeAck: a run stops after a result was written
// and before its entry was acknowledged; the next run of the same consumer
// finds the entry again and acknowledges it without a second result.
func TestRestartAfterCrashBeforeAck(t *testing.T) {
	addr, c := startRedis(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	var ids []string
	for i := range 10 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		ids = append(ids, xadd(t, c, "primary_user_id", p, "secondary_user_id", s))
	}
	path := queuetest.ResultsPath(t)
	cfg := config(t, addr, "c1")

	src := &crashAck{Source: source(t, cfg, queue.Options{Drain: true})}
	sink := queuetest.Sink(t, path)
	_, err := queuetest.Runner(t, srv, 1, nil).RunSource(t.Context(), src, sink)
	if !errors.Is(err, errCrash) {
		t.Fatalf("first run: %v, want the crash", err)
	}
	sink.Close()
	src.Close()
	first := queuetest.Results(t, path)
	if len(first) == 0 {
		t.Fatal("the first run wrote no result")
	}

	done, err := queue.ReadDone(path)
	if err != nil {
		t.Fatal(err)
	}
	src2 := source(t, cfg, queue.Options{Drain: true, Done: func(id string) bool { return done[id] }})
	sum, err := queuetest.Runner(t, srv, 2, nil).RunSource(t.Context(), src2, queuetest.Sink(t, path))
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	// Rows in flight when the first run stopped were linked without a
	// result: the second run finds them linked.
	got := queuetest.Results(t, path)
	for _, id := range ids {
		if rs := got[id]; len(rs) != 1 || (rs[0].Status != batch.StatusLinked && rs[0].Status != batch.StatusAlreadyLinked) {
			t.Errorf("message %s: %+v, want one result, linked or already_linked", id, rs)
		}
	}
	for id, rs := range first {
		if rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: the first run wrote %s, want linked", id, rs[0].Status)
		}
	}
	if sum.Kept < 1 {
		t.Errorf("second run kept %d rows, want the crashed one at least", sum.Kept)
	}
	if n := pending(t, c); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
	if st := srv.Stats(); st.LinksApplied != 10 || st.DoubleLinks != 0 {
		t.Errorf("tenant: %d links, %d double links; want 10, 0", st.LinksApplied, st.DoubleLinks)
	}
}

// TestDeadLetterAfterMaxDeliveries: a request that keeps failing for a
// transient reason is delivered max-deliveries times, then written failed
// and moved to the dead letters; an entry its consumers died on more often
// than that goes there at once, with an invalid result.
func TestDeadLetterAfterMaxDeliveries(t *testing.T) {
	addr, c := startRedis(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	srv.Seed("auth0|ok", "github|ok", "auth0|down", "github|down", "auth0|crashy", "github|crashy")
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
	ok := xadd(t, c, "primary_user_id", "auth0|ok", "secondary_user_id", "github|ok")
	down := xadd(t, c, "primary_user_id", "auth0|down", "secondary_user_id", "github|down")

	r := queuetest.Runner(t, srv, 2, queuetest.FailFor{Next: srv.Client().Transport, ID: "auth0|down"})
	path := queuetest.ResultsPath(t)
	src := source(t, cfg, queue.Options{Drain: true})
	sum, err := r.RunSource(t.Context(), src, queuetest.Sink(t, path))
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	got := queuetest.Results(t, path)
	if rs := got[ok]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
		t.Errorf("ok: %+v, want linked", rs)
	}
	if rs := got[down]; len(rs) != 1 || rs[0].Status != batch.StatusFailed {
		t.Errorf("down: %+v, want one failed result", rs)
	}
	if rs := got[crashy]; len(rs) != 1 || rs[0].Status != batch.StatusInvalid || !strings.Contains(rs[0].Error, "max-deliveries") {
		t.Errorf("crashy: %+v, want one invalid result naming max-deliveries", rs)
	}
	dead := deadIDs(t, c)
	if len(dead) != 2 || !strings.Contains(dead[down], "failed on delivery 3 of 3") || !strings.Contains(dead[crashy], "more than max-deliveries 3") {
		t.Errorf("dead letters %v, want down (failed on its last delivery) and crashy", dead)
	}
	if sum.Redelivered != 2 {
		t.Errorf("%d rows handed back, want 2 (down, twice)", sum.Redelivered)
	}
	if n := pending(t, c); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
}

// TestFollowStopsOnCancel: without Drain the source waits for new entries;
// entries added while it runs are processed; cancelling the run's context
// stops it as interrupted, with every entry read acknowledged.
func TestFollowStopsOnCancel(t *testing.T) {
	addr, c := startRedis(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	path := queuetest.ResultsPath(t)
	src := source(t, config(t, addr, "c1"), queue.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	var sum batch.Summary
	go func() {
		var err error
		sum, err = queuetest.Runner(t, srv, 2, nil).RunSource(ctx, src, queuetest.Sink(t, path))
		done <- err
	}()
	var ids []string
	for i := range 5 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		ids = append(ids, xadd(t, c, "primary_user_id", p, "secondary_user_id", s))
		time.Sleep(30 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for src.Stats().Acked < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the run ended by itself (%v) in follow mode", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, batch.ErrInterrupted) {
			t.Errorf("RunSource() = %v, want ErrInterrupted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the run did not stop after its context was cancelled")
	}
	got := queuetest.Results(t, path)
	for _, id := range ids {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: %+v, want linked", id, rs)
		}
	}
	if sum.Remaining != 0 {
		t.Errorf("%d rows remaining", sum.Remaining)
	}
	if n := pending(t, c); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
}

// TestDryRunAcknowledgesNothing: a dry run reads and checks the entries the
// group has not been handed yet, without a group of its own, and leaves the
// stream as it was.
func TestDryRunAcknowledgesNothing(t *testing.T) {
	addr, c := startRedis(t)
	xadd(t, c, "primary_user_id", "auth0|a", "secondary_user_id", "github|b")
	bad := xadd(t, c, "primary_user_id", "auth0|a", "nope", "x")
	path := queuetest.ResultsPath(t)
	src := source(t, config(t, addr, "c1"), queue.Options{Drain: true, DryRun: true})
	cfg := batch.DefaultConfig()
	cfg.DryRun = true
	sum, err := (&batch.Runner{Config: cfg}).RunSource(t.Context(), src, queuetest.Sink(t, path))
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	if sum.Counts[batch.StatusPlanned] != 1 || sum.Counts[batch.StatusInvalid] != 1 {
		t.Errorf("counts %v, want 1 planned, 1 invalid", sum.Counts)
	}
	if rs := queuetest.Results(t, path)[bad]; len(rs) != 1 || rs[0].Status != batch.StatusInvalid {
		t.Errorf("poison entry: %+v", rs)
	}
	if groups, err := c.XInfoGroups(t.Context(), stream).Result(); err != nil || len(groups) != 0 {
		t.Errorf("groups %v (%v), want none: a dry run creates nothing", groups, err)
	}
	if n, _ := c.XLen(t.Context(), stream+":dead").Result(); n != 0 {
		t.Errorf("%d dead letters, want none", n)
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
			s = &crashAck{Source: src}
		}
		_, err = queuetest.Runner(t, srv, 2, nil).RunSource(t.Context(), s, sink)
		return err
	}
	if err := run(true); !errors.Is(err, errCrash) {
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
