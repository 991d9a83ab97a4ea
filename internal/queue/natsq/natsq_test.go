package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/internal/queue/queuetest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

const stream = "LINKS"

// startNATS runs a NATS server with JetStream, its store in a temporary
// directory, in the test's process, and creates the stream of requests
// (subject "links"). It returns the server's address and a JetStream
// client.
func startNATS(t testing.TB) (string, jetstream.JetStream) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: stream, Subjects: []string{"links"}}); err != nil {
		t.Fatal(err)
	}
	return ns.Addr().String(), js
}

func config(t testing.TB, addr string) queue.Config {
	t.Helper()
	cfg, err := queue.Parse(fmt.Sprintf("nats://%s?stream=%s&consumer=workers&claim-idle=300ms&max-deliveries=3", addr, stream), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// publish publishes one request, fields given as name, value, ..., and
// returns its stream sequence.
func publish(t testing.TB, js jetstream.JetStream, fields ...string) string {
	t.Helper()
	obj := map[string]string{}
	for i := 0; i < len(fields); i += 2 {
		obj[fields[i]] = fields[i+1]
	}
	body, _ := json.Marshal(obj)
	return publishRaw(t, js, body)
}

func publishRaw(t testing.TB, js jetstream.JetStream, body []byte) string {
	t.Helper()
	ack, err := js.Publish(t.Context(), "links", body)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(ack.Sequence, 10)
}

func source(t testing.TB, cfg queue.Config, opt queue.Options) *queue.Source {
	t.Helper()
	opt.Poll = 50 * time.Millisecond
	src, err := NewSource(t.Context(), cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// ackPending returns the consumer's unacknowledged and undelivered messages.
func ackPending(t testing.TB, js jetstream.JetStream) (int, uint64) {
	t.Helper()
	c, err := js.Consumer(t.Context(), stream, "workers")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending, info.NumPending
}

// TestDrainAccountsForEveryRequest: as for Redis, a drain of valid,
// repeated, poison and already-linked requests gives each one result and
// leaves nothing pending.
func TestDrainAccountsForEveryRequest(t *testing.T) {
	addr, js := startNATS(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	srv.SetFaults(linkertest.Faults{Latency: 20 * time.Millisecond})
	want := map[string]batch.Status{}
	for i := range 30 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		want[publish(t, js, "primary_user_id", p, "secondary_user_id", s)] = batch.StatusLinked
	}
	srv.Seed("auth0|dup", "github|dup")
	var dups []string
	for range 6 {
		dups = append(dups, publish(t, js, "primary_user_id", "auth0|dup", "secondary_user_id", "github|dup"))
	}
	srv.Seed("auth0|old", "github|old")
	queuetest.Link(t, srv, "auth0|old", "github|old")
	want[publish(t, js, "primary_user_id", "auth0|old", "secondary_user_id", "github|old")] = batch.StatusAlreadyLinked
	poison := []string{
		publishRaw(t, js, []byte(`["auth0|x","github|y"]`)),
		publishRaw(t, js, []byte(`{"primary_user_id":"auth0|x","secondary_user_id":7}`)),
		publishRaw(t, js, []byte(`not json`)),
		publish(t, js, "primary_user_id", "auth0|x", "secondary_provider", "github", "link_with", "a.b.c"),
	}
	for _, id := range poison {
		want[id] = batch.StatusInvalid
	}
	probe := &queuetest.Probe{Next: srv.Client().Transport}
	path := queuetest.ResultsPath(t)
	src := source(t, config(t, addr), queue.Options{Drain: true})
	sum, err := queuetest.Runner(t, srv, 8, probe).RunSource(t.Context(), src, queuetest.Sink(t, path))
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	got := queuetest.Results(t, path)
	for id, st := range want {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != st {
			t.Errorf("message %s: %+v, want one %s", id, rs, st)
		}
	}
	linked := 0
	for _, id := range dups {
		if rs := got[id]; len(rs) != 1 {
			t.Errorf("message %s: %d results, want 1", id, len(rs))
		} else if rs[0].Status == batch.StatusLinked {
			linked++
		} else if rs[0].Status != batch.StatusAlreadyLinked {
			t.Errorf("repeated pair, message %s: %s (%s)", id, rs[0].Status, rs[0].Error)
		}
	}
	if linked != 1 {
		t.Errorf("the repeated pair was linked by %d messages, want 1", linked)
	}
	if len(got) != len(want)+len(dups) {
		t.Errorf("%d messages have results, want %d", len(got), len(want)+len(dups))
	}
	if p, n := ackPending(t, js); p != 0 || n != 0 {
		t.Errorf("%d messages unacknowledged, %d undelivered", p, n)
	}
	if m := probe.Max(); m != 1 {
		t.Errorf("%d link requests for one primary in flight at once, want 1", m)
	}
	if s := src.Stats(); s.DeadLettered != int64(len(poison)) {
		t.Errorf("%d terminated, want the %d poison messages", s.DeadLettered, len(poison))
	}
	if sum.Remaining != 0 {
		t.Errorf("%d rows remaining", sum.Remaining)
	}
}

// TestDeadConsumerMessagesRedelivered: a consumer that fetched messages and
// died without acknowledging them leaves them to the server, which delivers
// them to the consumer still alive after AckWait.
func TestDeadConsumerMessagesRedelivered(t *testing.T) {
	addr, js := startNATS(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	var ids []string
	for i := range 20 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		ids = append(ids, publish(t, js, "primary_user_id", p, "secondary_user_id", s))
	}
	dead, err := Open(t.Context(), config(t, addr), false)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := dead.Fetch(t.Context(), 12, 0)
	if err != nil || len(ds) != 12 {
		t.Fatalf("the dying consumer fetched %d (%v), want 12", len(ds), err)
	}
	dead.Close()

	path := queuetest.ResultsPath(t)
	src := source(t, config(t, addr), queue.Options{Drain: true})
	if _, err := queuetest.Runner(t, srv, 4, nil).RunSource(t.Context(), src, queuetest.Sink(t, path)); err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	got := queuetest.Results(t, path)
	for _, id := range ids {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: %+v, want one linked", id, rs)
		}
	}
	if p, n := ackPending(t, js); p != 0 || n != 0 {
		t.Errorf("%d unacknowledged, %d undelivered", p, n)
	}
}

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

// TestRestartAfterCrashBeforeAck: a message whose result was written but
// not acknowledged is delivered again and acknowledged without a second
// result.
func TestRestartAfterCrashBeforeAck(t *testing.T) {
	addr, js := startNATS(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	var ids []string
	for i := range 10 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		ids = append(ids, publish(t, js, "primary_user_id", p, "secondary_user_id", s))
	}
	path := queuetest.ResultsPath(t)
	cfg := config(t, addr)
	src := &crashAck{Source: source(t, cfg, queue.Options{Drain: true})}
	sink := queuetest.Sink(t, path)
	if _, err := queuetest.Runner(t, srv, 1, nil).RunSource(t.Context(), src, sink); !errors.Is(err, errCrash) {
		t.Fatalf("first run: %v, want the crash", err)
	}
	sink.Close()
	src.Close()
	done, err := queue.ReadDone(path)
	if err != nil || len(done) == 0 {
		t.Fatalf("first run's results: %v, %v", done, err)
	}
	src2 := source(t, cfg, queue.Options{Drain: true, Done: func(id string) bool { return done[id] }})
	sum, err := queuetest.Runner(t, srv, 2, nil).RunSource(t.Context(), src2, queuetest.Sink(t, path))
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	got := queuetest.Results(t, path)
	for _, id := range ids {
		if rs := got[id]; len(rs) != 1 || (rs[0].Status != batch.StatusLinked && rs[0].Status != batch.StatusAlreadyLinked) {
			t.Errorf("message %s: %+v, want one result, linked or already_linked", id, rs)
		}
	}
	if sum.Kept < 1 {
		t.Errorf("second run kept %d rows, want the crashed one at least", sum.Kept)
	}
	if p, n := ackPending(t, js); p != 0 || n != 0 {
		t.Errorf("%d unacknowledged, %d undelivered", p, n)
	}
	if st := srv.Stats(); st.LinksApplied != 10 || st.DoubleLinks != 0 {
		t.Errorf("tenant: %d links, %d double links; want 10, 0", st.LinksApplied, st.DoubleLinks)
	}
}

// TestTermAfterMaxDeliveries: a request that keeps failing for a transient
// reason is handed back until its last delivery, then written failed and
// terminated.
func TestTermAfterMaxDeliveries(t *testing.T) {
	addr, js := startNATS(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	srv.Seed("auth0|ok", "github|ok", "auth0|down", "github|down")
	ok := publish(t, js, "primary_user_id", "auth0|ok", "secondary_user_id", "github|ok")
	down := publish(t, js, "primary_user_id", "auth0|down", "secondary_user_id", "github|down")
	r := queuetest.Runner(t, srv, 2, queuetest.FailFor{Next: srv.Client().Transport, ID: "auth0|down"})
	path := queuetest.ResultsPath(t)
	src := source(t, config(t, addr), queue.Options{Drain: true})
	sum, err := r.RunSource(t.Context(), src, queuetest.Sink(t, path))
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	got := queuetest.Results(t, path)
	if rs := got[ok]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
		t.Errorf("ok: %+v", rs)
	}
	if rs := got[down]; len(rs) != 1 || rs[0].Status != batch.StatusFailed {
		t.Errorf("down: %+v, want one failed result", rs)
	}
	if sum.Redelivered != 2 || src.Stats().DeadLettered != 1 {
		t.Errorf("%d handed back, %d terminated; want 2, 1", sum.Redelivered, src.Stats().DeadLettered)
	}
	if p, n := ackPending(t, js); p != 0 || n != 0 {
		t.Errorf("%d unacknowledged, %d undelivered", p, n)
	}
}

// TestFollowStopsOnCancel: without Drain the source waits for messages;
// cancelling the context stops the run as interrupted.
func TestFollowStopsOnCancel(t *testing.T) {
	addr, js := startNATS(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	path := queuetest.ResultsPath(t)
	src := source(t, config(t, addr), queue.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := queuetest.Runner(t, srv, 2, nil).RunSource(ctx, src, queuetest.Sink(t, path))
		done <- err
	}()
	var ids []string
	for i := range 5 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		ids = append(ids, publish(t, js, "primary_user_id", p, "secondary_user_id", s))
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
			t.Errorf("message %s: %+v", id, rs)
		}
	}
}

// TestDryRunAcknowledgesNothing: a dry run reads every message, creates no
// consumer and acknowledges nothing.
func TestDryRunAcknowledgesNothing(t *testing.T) {
	addr, js := startNATS(t)
	publish(t, js, "primary_user_id", "auth0|a", "secondary_user_id", "github|b")
	publishRaw(t, js, []byte(`{"nope":"x"}`))
	src := source(t, config(t, addr), queue.Options{Drain: true, DryRun: true})
	cfg := batch.DefaultConfig()
	cfg.DryRun = true
	sum, err := (&batch.Runner{Config: cfg}).RunSource(t.Context(), src, queuetest.Sink(t, queuetest.ResultsPath(t)))
	if err != nil {
		t.Fatalf("RunSource: %v", err)
	}
	if sum.Counts[batch.StatusPlanned] != 1 || sum.Counts[batch.StatusInvalid] != 1 {
		t.Errorf("counts %v, want 1 planned, 1 invalid", sum.Counts)
	}
	if _, err := js.Consumer(t.Context(), stream, "workers"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("consumer lookup: %v, want not found: a dry run creates nothing", err)
	}
}

// TestInProgressKeepsSlowRowsFromOthers: messages whose link takes longer
// than AckWait are kept in progress by their consumer, so the server does
// not hand them to the other consumer: each pair gets one link request.
func TestInProgressKeepsSlowRowsFromOthers(t *testing.T) {
	addr, js := startNATS(t)
	srv := queuetest.Tenant(t, linkertest.RateLimit{})
	srv.SetFaults(linkertest.Faults{Latency: 1200 * time.Millisecond}) // AckWait is 300ms
	var ids []string
	for i := range 6 {
		p, s := fmt.Sprintf("auth0|p%d", i), fmt.Sprintf("github|s%d", i)
		srv.Seed(p, s)
		ids = append(ids, publish(t, js, "primary_user_id", p, "secondary_user_id", s))
	}
	paths := []string{queuetest.ResultsPath(t), queuetest.ResultsPath(t)}
	var wg sync.WaitGroup
	for i := range 2 {
		src := source(t, config(t, addr), queue.Options{Drain: true, Fetch: 3})
		sink := queuetest.Sink(t, paths[i])
		r := queuetest.Runner(t, srv, 3, nil)
		r.Config.Timeout = 10 * time.Second
		wg.Go(func() {
			if _, err := r.RunSource(t.Context(), src, sink); err != nil {
				t.Errorf("consumer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	a, b := queuetest.Results(t, paths[0]), queuetest.Results(t, paths[1])
	for _, id := range ids {
		if rs := append(a[id], b[id]...); len(rs) != 1 || rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: %+v", id, rs)
		}
	}
	for primary, n := range srv.Stats().PostsByPrimary {
		if n != 1 {
			t.Errorf("%s: %d link requests, want 1", primary, n)
		}
	}
}
