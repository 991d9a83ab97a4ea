package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/internal/queue/queuetest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// enqueue adds a request per pair to the stream links and returns their ids.
func enqueue(t *testing.T, c *redis.Client, pairs []pair) []string {
	t.Helper()
	ids := make([]string, len(pairs))
	for i, p := range pairs {
		id, err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: "links", Values: []any{"primary_user_id", p.Primary, "secondary_user_id", p.Secondary}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

// queueResults reads a queue run's results file by message id.
func queueResults(t *testing.T, path string) map[string][]batch.Result {
	t.Helper()
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	return queuetest.Results(t, path)
}

func groupPending(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	p, err := c.XPending(t.Context(), "links", "linkbatch").Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

// TestQueueDrainRedis: a drain of a Redis stream links every pair, writes
// one result per request with its message id, exits 0, and a second drain
// finds nothing to do; the password of the URL appears nowhere.
func TestQueueDrainRedis(t *testing.T) {
	addr, c := queuetest.StartRedis(t)
	pairs := clitest.GenPairs("q", 30)
	srv, token := clitest.NewTenant(t, linkertest.Config{}, pairs)
	ids := enqueue(t, c, pairs)
	out := filepath.Join(t.TempDir(), "results.csv")
	in := fmt.Sprintf("redis://:hunter2-not-set@%s/0?stream=links&consumer=c1", addr)
	for run := range 2 {
		o := runLinkbatch(t, invocation{args: []string{"run", "--drain", "-P", "--in", in, "--out", out}, env: tenantEnv(srv, token)})
		if o.code != exitOK {
			t.Fatalf("run %d: exit %d\n%s", run, o.code, o.stderr)
		}
		// The progress line of a queue counts rows from the start, with
		// the backlog: the first run drains 30, the second finds none.
		if want := fmt.Sprintf("%d rows  failed 0", 30*(1-run)); !strings.Contains(o.stderr, want) || !strings.Contains(o.stderr, "backlog ") {
			t.Errorf("run %d: the progress line lacks %q and the backlog:\n%s", run, want, o.stderr)
		}
		if strings.Contains(o.stderr, "hunter2") {
			t.Errorf("run %d: the log shows the queue's password", run)
		}
	}
	got := queueResults(t, out)
	for _, id := range ids {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: %+v, want one linked", id, rs)
		}
	}
	if n := groupPending(t, c); n != 0 {
		t.Errorf("%d entries pending", n)
	}
	if st := srv.Stats(); st.LinksApplied != len(pairs) {
		t.Errorf("%d links applied, want %d", st.LinksApplied, len(pairs))
	}
}

// TestQueueSIGKILLOneOfTwoConsumers: two linkbatch processes drain one
// stream through one group; one is killed with SIGKILL mid-run. The other
// claims its entries once idle past claim-idle and finishes them: every
// request has a result, every pair is linked once, nothing stays pending.
func TestQueueSIGKILLOneOfTwoConsumers(t *testing.T) {
	skipShort(t)
	addr, c := queuetest.StartRedis(t)
	pairs := clitest.GenPairs("k", 300)
	srv, token := clitest.NewTenant(t, linkertest.Config{RateLimit: linkertest.RateLimit{Burst: 10, Rate: 100}}, pairs)
	ids := enqueue(t, c, pairs)
	dir := t.TempDir()
	outs := []string{filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")}
	start := func(name, out string) *process {
		in := fmt.Sprintf("redis://%s/0?stream=links&consumer=%s&claim-idle=1s", addr, name)
		return startBinary(t, invocation{args: []string{"run", "--drain", "--no-progress", "--share", "0.5", "--in", in, "--out", out}, env: tenantEnv(srv, token)})
	}
	a, b := start("a", outs[0]), start("b", outs[1])
	waitUntil(t, 30*time.Second, a, "the first consumer writes results", func() bool { return len(queueResults(t, outs[0])) >= 30 })
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 10*time.Second)
	if code := b.wait(t, 60*time.Second); code != exitOK {
		t.Fatalf("the surviving consumer exited %d\n%s", code, b.stderr)
	}
	ra, rb := queueResults(t, outs[0]), queueResults(t, outs[1])
	fromA := 0
	for _, id := range ids {
		rs := append(ra[id], rb[id]...)
		if len(rs) == 0 {
			t.Errorf("message %s: no result", id)
			continue
		}
		for _, r := range rs {
			if r.Status != batch.StatusLinked && r.Status != batch.StatusAlreadyLinked {
				t.Errorf("message %s: %s (%s)", id, r.Status, r.Error)
			}
		}
		if len(rs) > 2 || len(rb[id]) > 1 || len(ra[id]) > 1 {
			t.Errorf("message %s: %d results from a, %d from b", id, len(ra[id]), len(rb[id]))
		}
		if len(ra[id]) > 0 {
			fromA++
		}
	}
	if n := groupPending(t, c); n != 0 {
		t.Errorf("%d entries pending", n)
	}
	if st := srv.Stats(); st.LinksApplied != len(pairs) || st.DoubleLinks != 0 {
		t.Errorf("tenant: %d links, %d double links; want %d, 0", st.LinksApplied, st.DoubleLinks, len(pairs))
	}
	if fromA == 0 || fromA == len(ids) {
		t.Errorf("a wrote results for %d requests: the kill was not mid-run", fromA)
	}
	if !strings.Contains(b.stderr.String(), `"msg":"queue"`) {
		t.Errorf("no queue summary line from the survivor")
	}
}

// TestQueueFollowSIGTERM: without --drain the run follows the stream;
// SIGTERM stops it with exit 3 once the rows in flight are finished and
// acknowledged.
func TestQueueFollowSIGTERM(t *testing.T) {
	addr, c := queuetest.StartRedis(t)
	pairs := clitest.GenPairs("f", 10)
	srv, token := clitest.NewTenant(t, linkertest.Config{}, pairs)
	out := filepath.Join(t.TempDir(), "results.csv")
	in := fmt.Sprintf("redis://%s/0?stream=links&consumer=c1", addr)
	metricsAddr := freeAddr(t)
	p := startBinary(t, invocation{args: []string{"run", "--no-progress", "--in", in, "--out", out, "--metrics-addr", metricsAddr}, env: tenantEnv(srv, token)})
	ids := enqueue(t, c, pairs[:5])
	waitUntil(t, 30*time.Second, p, "the first requests have results", func() bool { return len(queueResults(t, out)) == 5 })
	ids = append(ids, enqueue(t, c, pairs[5:])...)
	waitUntil(t, 30*time.Second, p, "the later requests have results", func() bool { return len(queueResults(t, out)) == 10 })
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"linkbatch_queue_backlog ", "linkbatch_queue_pending ", "linkbatch_dead_letters_total 0"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 30*time.Second); code != exitAborted {
		t.Errorf("exit %d after SIGTERM, want %d\n%s", code, exitAborted, p.stderr)
	}
	got := queueResults(t, out)
	for _, id := range ids {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
			t.Errorf("message %s: %+v", id, rs)
		}
	}
	if n := groupPending(t, c); n != 0 {
		t.Errorf("%d entries pending", n)
	}
}

// TestQueueFlags: settings that make no sense with a queue are refused
// before anything is read.
func TestQueueFlags(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "r.csv")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--drain", "--in", filepath.Join(dir, "pairs.csv")}, "--drain goes with a queue"},
		{[]string{"--in", "redis://127.0.0.1:1/0?stream=s&bogus=1"}, `unknown key "bogus"`},
		{[]string{"--in", "redis://127.0.0.1:1?stream=s", "--resume", "--retry-failed"}, "--retry-failed has no meaning"},
		{[]string{"--in", "nats://127.0.0.1:1?stream=s", "--out", "redis://127.0.0.1:1?stream=r"}, "goes with a Redis --in"},
		{[]string{"--in", "redis://:pw1234567@127.0.0.1:1?stream=s", "--out", "redis://127.0.0.1:2?stream=r"}, "on the server and database of --in"},
	}
	for _, tt := range tests {
		args := append([]string{"run", "--dry-run"}, tt.args...)
		if !strings.Contains(strings.Join(tt.args, " "), "--out") {
			args = append(args, "--out", out)
		}
		o := runLinkbatch(t, invocation{args: args})
		if o.code != exitUsage || !strings.Contains(o.stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want usage error %q", tt.args, o.code, o.stderr, tt.want)
		}
		if strings.Contains(o.stderr, "pw1234567") {
			t.Errorf("%v: stderr shows the password", tt.args)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused run created the results file")
	}
}

// TestQueueEnqueueThenDrainSimulated: 'linkbatch enqueue' turns a sample
// pairs file into stream entries, and a simulated drain gives each a
// result, the invalid rows dead-lettered.
func TestQueueEnqueueThenDrainSimulated(t *testing.T) {
	addr, c := queuetest.StartRedis(t)
	to := fmt.Sprintf("redis://%s/0?stream=links", addr)
	o := runLinkbatch(t, invocation{args: []string{"enqueue", "--in", "../../samples/pairs-with-mistakes.csv", "--to", to}})
	// The sample of mistakes holds one line that is not CSV: it is named and
	// left out.
	if o.code != exitProblems || !strings.Contains(o.stderr, "line 10 left out") {
		t.Fatalf("enqueue: exit %d, want %d naming line 10\n%s", o.code, exitProblems, o.stderr)
	}
	n, err := c.XLen(t.Context(), "links").Result()
	if err != nil || n == 0 || !strings.Contains(o.stdout, fmt.Sprintf("%d entries added", n)) {
		t.Fatalf("stream holds %d entries (%v); enqueue said %q", n, err, o.stdout)
	}
	out := filepath.Join(t.TempDir(), "results.csv")
	o = runLinkbatch(t, invocation{args: []string{"run", "--simulate", "--drain", "--no-progress", "--in", to, "--out", out}})
	if o.code != exitOK && o.code != exitProblems {
		t.Fatalf("run: exit %d\n%s", o.code, o.stderr)
	}
	got := queueResults(t, out)
	invalid := 0
	for id, rs := range got {
		if len(rs) != 1 {
			t.Errorf("message %s: %d results", id, len(rs))
		}
		if rs[0].Status == batch.StatusInvalid {
			invalid++
		}
	}
	if int64(len(got)) != n {
		t.Errorf("%d messages have results, want %d", len(got), n)
	}
	if d, _ := c.XLen(t.Context(), "links:dead").Result(); d != int64(invalid) {
		t.Errorf("%d dead letters, want the %d invalid rows", d, invalid)
	}
	if p := groupPending(t, c); p != 0 {
		t.Errorf("%d pending", p)
	}
}

// TestQueueDrainNATS: a drain of a JetStream stream (a NATS server with
// JetStream run in the test's process) links every pair, one result per
// message, the poison one terminated.
func TestQueueDrainNATS(t *testing.T) {
	addr, js := queuetest.StartNATS(t, "LINKS")
	pairs := clitest.GenPairs("n", 20)
	srv, token := clitest.NewTenant(t, linkertest.Config{}, pairs)
	for _, p := range pairs {
		if _, err := js.Publish(t.Context(), "links", fmt.Appendf(nil, `{"primary_user_id":%q,"secondary_user_id":%q}`, p.Primary, p.Secondary)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(t.Context(), "links", []byte(`{"primary_user_id":"auth0|x","colour":"red"}`)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "results.csv")
	in := fmt.Sprintf("nats://%s?stream=LINKS&consumer=workers", addr)
	o := runLinkbatch(t, invocation{args: []string{"run", "--drain", "--no-progress", "--in", in, "--out", out}, env: tenantEnv(srv, token)})
	if o.code != exitProblems {
		t.Fatalf("exit %d, want %d (one poison message)\n%s", o.code, exitProblems, o.stderr)
	}
	got := queueResults(t, out)
	if len(got) != len(pairs)+1 {
		t.Errorf("%d messages have results, want %d", len(got), len(pairs)+1)
	}
	for seq := 1; seq <= len(pairs); seq++ {
		if rs := got[fmt.Sprint(seq)]; len(rs) != 1 || rs[0].Status != batch.StatusLinked {
			t.Errorf("message %d: %+v", seq, rs)
		}
	}
	if rs := got[fmt.Sprint(len(pairs)+1)]; len(rs) != 1 || rs[0].Status != batch.StatusInvalid || !strings.Contains(rs[0].Error, `"colour"`) {
		t.Errorf("poison message: %+v", rs)
	}
	cons, err := js.Consumer(t.Context(), "LINKS", "workers")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := cons.Info(t.Context()); err != nil || info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("consumer: %+v, %v; want nothing pending", info, err)
	}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestQueueSharedLimitRedis: a drain of a Redis stream at a set --rate
// paces its requests by the tenant's limit held in that Redis (key
// rate:linkbatch:rate:HOST) when the URL says shared-limit=on, and not by
// default.
func TestQueueSharedLimitRedis(t *testing.T) {
	for _, tt := range []struct {
		name, query string
		shared      bool
	}{
		{name: "default", query: "", shared: false},
		{name: "on", query: "&shared-limit=on", shared: true},
		{name: "off", query: "&shared-limit=off", shared: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, c := queuetest.StartRedis(t)
			pairs := clitest.GenPairs("s", 10)
			srv, token := clitest.NewTenant(t, linkertest.Config{}, pairs)
			enqueue(t, c, pairs)
			// A limit last used long ago, without expiry: a wait on it
			// overwrites it with a theoretical arrival time that expires.
			key := "rate:linkbatch:rate:" + strings.TrimPrefix(srv.URL, "http://")
			if err := c.Set(t.Context(), key, "0", 0).Err(); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "results.csv")
			in := fmt.Sprintf("redis://%s/0?stream=links&consumer=c1%s", addr, tt.query)
			o := runLinkbatch(t, invocation{args: []string{"run", "--drain", "--no-progress", "--rate", "50", "--in", in, "--out", out}, env: tenantEnv(srv, token)})
			if o.code != exitOK {
				t.Fatalf("exit %d\n%s", o.code, o.stderr)
			}
			if st := srv.Stats(); st.LinksApplied != len(pairs) {
				t.Errorf("%d links applied, want %d", st.LinksApplied, len(pairs))
			}
			v, err := c.Get(t.Context(), key).Result()
			if err != nil && err != redis.Nil {
				t.Fatal(err)
			}
			if used := v != "0"; used != tt.shared {
				t.Errorf("limit %s = %q after the run: shared limit used %v, want %v", key, v, used, tt.shared)
			}
		})
	}
}
