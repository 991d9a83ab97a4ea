package queuetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// Broker is one queue broker under test: a fresh stream of requests on a
// real server, read by one consumer group (Redis) or durable consumer
// (JetStream) whatever the consumer's name. Its settings give a
// message claim-idle (or AckWait) of 300ms and max-deliveries 3.
type Broker interface {
	// Config returns the queue settings of the consumer named name.
	Config(t testing.TB, consumer string) queue.Config
	// Add adds a request with the fields (name, value, ...) and returns
	// its message id.
	Add(t testing.TB, fields ...string) string
	// AddPoison adds requests that are no valid link request and returns
	// their message ids, each with a word its error must hold.
	AddPoison(t testing.TB) map[string]string
	// Source opens a source reading with cfg, closed at the end of the test.
	Source(t testing.TB, cfg queue.Config, opt queue.Options) *queue.Source
	// Abandon opens a consumer named name that takes n messages and dies
	// without acknowledging them.
	Abandon(t testing.TB, name string, n int)
	// Unsettled returns how many messages are not acknowledged: delivered
	// and pending, or never delivered.
	Unsettled(t testing.TB) int
	// Untouched reports what a dry run left on the server (a group, a
	// consumer, a dead letter), nil when nothing.
	Untouched(t testing.TB) error
}

// RunScenarios runs, each on a broker of its own from open, what every
// broker must do: account for every request of a drain, hand abandoned
// messages to a live consumer, survive a crash between a result and its
// acknowledgement, give up on a message after max-deliveries, follow until
// cancelled, acknowledge nothing in a dry run, and keep slow messages from
// the other consumers.
func RunScenarios(t *testing.T, open func(t *testing.T) Broker) {
	tests := []struct {
		name string
		run  func(t *testing.T, b Broker)
	}{
		{"DrainAccountsForEveryRequest", drainAccountsForEveryRequest},
		{"AbandonedMessagesFinished", abandonedMessagesFinished},
		{"RestartAfterCrashBeforeAck", restartAfterCrashBeforeAck},
		{"FailedOnLastDelivery", failedOnLastDelivery},
		{"FollowStopsOnCancel", followStopsOnCancel},
		{"DryRunAcknowledgesNothing", dryRunAcknowledgesNothing},
		{"SlowMessagesKeptFromOthers", slowMessagesKeptFromOthers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, open(t)) })
	}
}

// addPairs seeds n fresh pairs on srv, adds a request for each and returns
// their message ids.
func addPairs(t testing.TB, b Broker, srv *linkertest.Server, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		ids[i] = b.Add(t, "primary_user_id", p, "secondary_user_id", s)
	}
	return ids
}

// checkSettled fails the test when a message is left unacknowledged.
func checkSettled(t testing.TB, b Broker) {
	t.Helper()
	if n := b.Unsettled(t); n != 0 {
		t.Errorf("%d messages not acknowledged", n)
	}
}

// drainAccountsForEveryRequest drains valid, repeated, poison and
// already-linked requests: each has exactly one result, nothing is left
// unacknowledged, the poison ones are dead-lettered with an error naming
// what is wrong, every pair is linked once, and two requests for one pair
// are never sent at the same moment.
func drainAccountsForEveryRequest(t *testing.T, b Broker) {
	srv := Tenant(t, linkertest.RateLimit{})
	srv.SetFaults(linkertest.Faults{Latency: 20 * time.Millisecond})
	want := map[string]batch.Status{}
	for _, id := range addPairs(t, b, srv, 30) {
		want[id] = batch.StatusLinked
	}
	// The same pair 6 more times, back to back: the first links, the others
	// find it linked.
	srv.Seed("auth0|dup", "github|dup")
	var dups []string
	for range 6 {
		dups = append(dups, b.Add(t, "primary_user_id", "auth0|dup", "secondary_user_id", "github|dup"))
	}
	// Linked by an earlier run.
	srv.Seed("auth0|old", "github|old")
	Link(t, srv, "auth0|old", "github|old")
	want[b.Add(t, "primary_user_id", "auth0|old", "secondary_user_id", "github|old")] = batch.StatusAlreadyLinked
	poison := b.AddPoison(t)
	for id := range poison {
		want[id] = batch.StatusInvalid
	}

	probe := &Probe{Next: srv.Client().Transport}
	path := ResultsPath(t)
	src := b.Source(t, b.Config(t, "c1"), queue.Options{Drain: true})
	sum, err := Runner(t, srv, 8, probe).RunSource(t.Context(), src, Sink(t, path))
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}

	got := Results(t, path)
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
	for id, word := range poison {
		if rs := got[id]; len(rs) == 1 && !strings.Contains(rs[0].Error, word) {
			t.Errorf("poison message %s: error %q, want it to name %s", id, rs[0].Error, word)
		}
	}
	checkSettled(t, b)
	if m := probe.Max(); m != 1 {
		t.Errorf("%d link requests for one primary were in flight at once, want 1", m)
	}
	if st := srv.Stats(); st.LinksApplied != 32 || st.DoubleLinks != 0 {
		t.Errorf("tenant: %d links applied, %d double links; want 32 (30 pairs, the repeated one once, the earlier run's), 0", st.LinksApplied, st.DoubleLinks)
	}
	if sum.Rows != len(want)+len(dups) || sum.Remaining != 0 {
		t.Errorf("summary rows %d remaining %d, want %d, 0", sum.Rows, sum.Remaining, len(want)+len(dups))
	}
	if s := src.Stats(); s.DeadLettered != int64(len(poison)) || s.InFlight != 0 || s.Held != 0 {
		t.Errorf("source stats %+v, want %d dead-lettered, nothing in flight or held", s, len(poison))
	}
}

// abandonedMessagesFinished: a consumer that took messages and died
// without acknowledging them leaves them to the server, which hands them to
// a live consumer once they are idle past claim-idle; it finishes them.
func abandonedMessagesFinished(t *testing.T, b Broker) {
	srv := Tenant(t, linkertest.RateLimit{})
	ids := addPairs(t, b, srv, 20)
	b.Abandon(t, "dies", 12)
	path := ResultsPath(t)
	src := b.Source(t, b.Config(t, "lives"), queue.Options{Drain: true})
	if _, err := Runner(t, srv, 4, nil).RunSource(t.Context(), src, Sink(t, path)); err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	got := Results(t, path)
	for _, id := range ids {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: %+v, want one linked", id, rs)
		}
	}
	checkSettled(t, b)
}

// CrashAck wraps a source so that its first acknowledgement fails with
// ErrCrash, as a process killed between writing a result and acknowledging
// it.
type CrashAck struct {
	*queue.Source
	once sync.Once
}

// ErrCrash is the error of CrashAck's failed acknowledgement.
var ErrCrash = errors.New("killed before the acknowledgement")

// Read implements batch.Source.
func (s *CrashAck) Read(ctx context.Context) (batch.Row, batch.AckFunc, error) {
	row, ack, err := s.Source.Read(ctx)
	if ack == nil {
		return row, ack, err
	}
	return row, func(ctx context.Context) error {
		crashed := false
		s.once.Do(func() { crashed = true })
		if crashed {
			return ErrCrash
		}
		return ack(ctx)
	}, err
}

// restartAfterCrashBeforeAck: a run stops after a result was written and
// before its message was acknowledged; the next run of the same consumer
// is handed the message again and acknowledges it without a second result.
func restartAfterCrashBeforeAck(t *testing.T, b Broker) {
	srv := Tenant(t, linkertest.RateLimit{})
	ids := addPairs(t, b, srv, 10)
	path := ResultsPath(t)
	cfg := b.Config(t, "c1")

	src := &CrashAck{Source: b.Source(t, cfg, queue.Options{Drain: true})}
	sink := Sink(t, path)
	if _, err := Runner(t, srv, 1, nil).RunSource(t.Context(), src, sink); !errors.Is(err, ErrCrash) {
		t.Fatalf("first run: %v, want the crash", err)
	}
	sink.Close()
	src.Close()
	first := Results(t, path)
	if len(first) == 0 {
		t.Fatal("the first run wrote no result")
	}
	for id, rs := range first {
		if rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: the first run wrote %s, want linked", id, rs[0].Status)
		}
	}

	done, err := queue.ReadDone(path)
	if err != nil {
		t.Fatal(err)
	}
	src2 := b.Source(t, cfg, queue.Options{Drain: true, Done: func(id string) bool { return done[id] }})
	sum, err := Runner(t, srv, 2, nil).RunSource(t.Context(), src2, Sink(t, path))
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	// Rows in flight when the first run stopped were linked without a
	// result: the second run finds them linked.
	got := Results(t, path)
	for _, id := range ids {
		if rs := got[id]; len(rs) != 1 || (rs[0].Status != batch.StatusLinked && rs[0].Status != batch.StatusAlreadyLinked) {
			t.Errorf("message %s: %+v, want one result, linked or already_linked", id, rs)
		}
	}
	if sum.Kept < 1 {
		t.Errorf("second run kept %d rows, want the crashed one at least", sum.Kept)
	}
	checkSettled(t, b)
	if st := srv.Stats(); st.LinksApplied != 10 || st.DoubleLinks != 0 {
		t.Errorf("tenant: %d links, %d double links; want 10, 0", st.LinksApplied, st.DoubleLinks)
	}
}

// failedOnLastDelivery: a request that keeps failing for a transient
// reason is handed back until its last delivery, then written failed and
// dead-lettered; the others are not held up by it.
func failedOnLastDelivery(t *testing.T, b Broker) {
	srv := Tenant(t, linkertest.RateLimit{})
	srv.Seed("auth0|ok", "github|ok", "auth0|down", "github|down")
	ok := b.Add(t, "primary_user_id", "auth0|ok", "secondary_user_id", "github|ok")
	down := b.Add(t, "primary_user_id", "auth0|down", "secondary_user_id", "github|down")
	r := Runner(t, srv, 2, FailFor{Next: srv.Client().Transport, ID: "auth0|down"})
	path := ResultsPath(t)
	src := b.Source(t, b.Config(t, "c1"), queue.Options{Drain: true})
	sum, err := r.RunSource(t.Context(), src, Sink(t, path))
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	got := Results(t, path)
	if rs := got[ok]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
		t.Errorf("ok: %+v, want one linked", rs)
	}
	if rs := got[down]; len(rs) != 1 || rs[0].Status != batch.StatusFailed {
		t.Errorf("down: %+v, want one failed result", rs)
	}
	if sum.Redelivered != 2 || src.Stats().DeadLettered != 1 {
		t.Errorf("%d handed back, %d dead-lettered; want 2 (down, twice), 1", sum.Redelivered, src.Stats().DeadLettered)
	}
	checkSettled(t, b)
}

// followStopsOnCancel: without Drain the source waits for new messages;
// those added while it runs are processed; cancelling the run's context
// stops it as interrupted, with every message read acknowledged.
func followStopsOnCancel(t *testing.T, b Broker) {
	srv := Tenant(t, linkertest.RateLimit{})
	path := ResultsPath(t)
	src := b.Source(t, b.Config(t, "c1"), queue.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	var sum batch.Summary
	go func() {
		var err error
		sum, err = Runner(t, srv, 2, nil).RunSource(ctx, src, Sink(t, path))
		done <- err
	}()
	var ids []string
	for i := range 5 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		ids = append(ids, b.Add(t, "primary_user_id", p, "secondary_user_id", s))
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
	got := Results(t, path)
	for _, id := range ids {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: %+v, want linked", id, rs)
		}
	}
	if sum.Remaining != 0 {
		t.Errorf("%d rows remaining", sum.Remaining)
	}
	checkSettled(t, b)
}

// dryRunAcknowledgesNothing: a dry run reads and checks the messages
// without a group or consumer of its own, and leaves the server as it was.
func dryRunAcknowledgesNothing(t *testing.T, b Broker) {
	b.Add(t, "primary_user_id", "auth0|a", "secondary_user_id", "github|b")
	bad := b.Add(t, "primary_user_id", "auth0|a", "nope", "x")
	path := ResultsPath(t)
	src := b.Source(t, b.Config(t, "c1"), queue.Options{Drain: true, DryRun: true})
	cfg := batch.DefaultConfig()
	cfg.DryRun = true
	sum, err := (&batch.Runner{Config: cfg}).RunSource(t.Context(), src, Sink(t, path))
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	if sum.Counts[batch.StatusPlanned] != 1 || sum.Counts[batch.StatusInvalid] != 1 {
		t.Errorf("counts %v, want 1 planned, 1 invalid", sum.Counts)
	}
	if rs := Results(t, path)[bad]; len(rs) != 1 || rs[0].Status != batch.StatusInvalid {
		t.Errorf("poison message: %+v, want one invalid", rs)
	}
	if err := b.Untouched(t); err != nil {
		t.Errorf("a dry run must leave the server as it was: %v", err)
	}
}

// slowMessagesKeptFromOthers: messages whose link takes longer than
// claim-idle are kept by their consumer (a heartbeat, or "in progress"),
// so the server never hands them to the other consumer: each pair gets one
// link request.
func slowMessagesKeptFromOthers(t *testing.T, b Broker) {
	srv := Tenant(t, linkertest.RateLimit{})
	// Links take three times claim-idle: a heartbeat (every third of it)
	// late by up to two thirds of it, on a loaded machine, still keeps
	// them.
	const claimIdle = time.Second
	srv.SetFaults(linkertest.Faults{Latency: 3 * claimIdle})
	ids := addPairs(t, b, srv, 6)
	paths := []string{ResultsPath(t), ResultsPath(t)}
	var wg sync.WaitGroup
	for i, name := range []string{"a", "b"} {
		cfg := b.Config(t, name)
		cfg.ClaimIdle = claimIdle
		src := b.Source(t, cfg, queue.Options{Drain: true, Fetch: 3})
		sink := Sink(t, paths[i])
		r := Runner(t, srv, 3, nil)
		r.Config.Timeout = 10 * time.Second
		wg.Go(func() {
			if _, err := r.RunSource(t.Context(), src, sink); err != nil {
				t.Errorf("consumer %s: %v", name, err)
			}
		})
	}
	wg.Wait()
	a, c := Results(t, paths[0]), Results(t, paths[1])
	for _, id := range ids {
		if rs := append(a[id], c[id]...); len(rs) != 1 || rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: %+v, want one linked", id, rs)
		}
	}
	for primary, n := range srv.Stats().PostsByPrimary {
		if n != 1 {
			t.Errorf("%s: %d link requests, want 1", primary, n)
		}
	}
}
