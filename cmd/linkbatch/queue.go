package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/internal/queue/natsq"
	"github.com/linkbatch/linkbatch/internal/queue/redisq"
	"github.com/linkbatch/linkbatch/linker"
)

// queueSettings are the settings of a run that reads a queue: the queue
// --in names and, with a Redis --in, the results stream --out may name.
type queueSettings struct {
	in      queue.Config
	results string // the results stream; "" when --out is a file
}

// isQueue reports whether --in names a queue rather than a file.
func isQueue(in string) bool { return queue.IsURL(in) }

// validateQueue checks the files of a run that reads a queue: --in parses,
// --out is a results file (appended across runs: --resume is implied) or,
// for a Redis queue, redis://...?stream=NAME on the same server; and sets
// c.queue.
func (c *config) validateQueue() error {
	in, err := queue.Parse(c.In, c.getenv)
	if err != nil {
		return usagef("--in: %v", err)
	}
	qs := &queueSettings{in: in}
	c.In = in.String() // what is logged from here on: the password masked
	if c.RetryFailed {
		return usagef("--retry-failed has no meaning with a queue: a request that failed for a transient reason is delivered again until max-deliveries")
	}
	if c.Simulate && c.Batch.DryRun {
		return usagef("--simulate and --dry-run together send nothing and read nothing: drop one")
	}
	if queue.IsURL(c.Out) {
		out, err := queue.Parse(c.Out, c.getenv)
		if err != nil {
			return usagef("--out: %v", err)
		}
		switch {
		case in.Kind != queue.Redis || out.Kind != queue.Redis:
			return usagef("--out: a results stream goes with a Redis --in, on the same server")
		case out.Addr != in.Addr || out.DB != in.DB:
			return usagef("--out: the results stream must be on the server and database of --in (%s), so that a result and its acknowledgement are written together", in.Addr)
		case c.Report != "":
			return usagef("--report needs --out to name a regular file, which it reads back")
		}
		qs.results = out.Stream
		c.Out = out.String()
		c.outStream = true
		c.queue = qs
		return nil
	}
	stream, err := batch.IsStreamOut(c.Out)
	if err != nil {
		return usagef("--out: %v", err)
	}
	if stream {
		return usagef("--out must be a regular file with a queue: it grows across runs and tells a request delivered again from a new one")
	}
	if err := checkAliases(c); err != nil {
		return err
	}
	c.queue = qs
	return nil
}

// emptyInput is the input the simulated tenant is seeded from in queue
// mode: none; each request seeds its own users as it is read.
func emptyInput() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("primary_user_id,secondary_user_id\n")), nil
}

// runQueue is 'linkbatch run' over a queue: claim the results file, open
// the queue, build the runner, serve metrics, run the pool over the queue
// until it is drained (--drain) or a signal stops it, and report. There is
// no pre-pass; the results file is appended to, and a request whose result
// it holds is acknowledged without a second one.
func (c *command) runQueue(ctx context.Context) error {
	cfg, qs := c.cfg, c.cfg.queue
	var (
		sink batch.Sink
		done map[string]bool
	)
	if qs.results == "" {
		lock, err := batch.ClaimResults(batch.ResultsOptions{Out: cfg.Out, Log: c.log})
		if err != nil {
			return err
		}
		c.onClose(lock.Release)
		// Opened first: a last line cut short is cut off before the file
		// is read back.
		fs, err := queue.OpenFileSink(cfg.Out)
		if err != nil {
			return err
		}
		c.onClose(func() {
			if err := fs.Close(); err != nil {
				c.log.Warn("results file not closed cleanly", zap.Error(err))
			}
		})
		if err := lock.Hold(cfg.Out); err != nil {
			return err
		}
		if done, err = queue.ReadDone(cfg.Out); err != nil {
			return err
		}
		sink = fs
	}
	c.open = emptyInput
	if err := c.shareLimit(ctx); err != nil {
		return err
	}
	if err := c.buildRunner(); err != nil {
		return err
	}
	opt := queue.Options{Drain: cfg.Drain, DryRun: cfg.Batch.DryRun, Log: c.log,
		Done: func(id string) bool { return done[id] }}
	var src *queue.Source
	switch qs.in.Kind {
	case queue.Redis:
		s, b, err := redisq.NewSource(ctx, qs.in, opt)
		if err != nil {
			return err
		}
		src = s
		if qs.results != "" {
			rs, err := b.PublishResults(qs.results)
			if err != nil {
				src.Close()
				return usagef("--out: %v", err)
			}
			sink = rs
		}
	case queue.NATS:
		s, err := natsq.NewSource(ctx, qs.in, opt)
		if err != nil {
			return err
		}
		src = s
	}
	c.onClose(func() {
		if err := src.Close(); err != nil {
			c.log.Warn("queue not closed cleanly", zap.Error(err))
		}
	})
	if err := c.startMetrics(ctx, queueMetrics(src)...); err != nil {
		return err
	}
	var in batch.Source = src
	if c.sim != nil {
		in = &seedingSource{Source: src, sim: c.sim}
	}
	sum, runErr := c.executeQueue(ctx, in, sink, src)
	return c.finish(sum, batch.ResumeReport{}, runErr)
}

// shareLimit makes the pacer of a run reading a Redis stream wait on the
// tenant's limit held in that Redis too, so that the processes reading the
// stream pace by one limit, when the URL says shared-limit=on.
func (c *command) shareLimit(ctx context.Context) error {
	in := c.cfg.queue.in
	if in.Kind != queue.Redis || !in.SharedLimit {
		return nil
	}
	tenant := c.cfg.Domain
	if u, err := linker.ParseDomain(tenant); err == nil {
		tenant = u.Host
	}
	l, err := redisq.OpenLimiter(ctx, in, tenant, func(err error) {
		c.log.Warn("shared rate limit unavailable, pacing on this process's own", zap.Error(err))
	})
	if err != nil {
		return err
	}
	c.onClose(func() { l.Close() })
	c.cfg.Pace.Shared = l
	return nil
}

// seedingSource seeds the simulated tenant (--simulate) with the users of
// each request read, as a CSV run seeds it from the whole input at the
// start.
type seedingSource struct {
	*queue.Source
	sim *simulation

	mu     sync.Mutex
	paired map[string]bool
}

// Read implements batch.Source.
func (s *seedingSource) Read(ctx context.Context) (batch.Row, batch.AckFunc, error) {
	row, ack, err := s.Source.Read(ctx)
	if err != nil || row.Err != nil {
		return row, ack, err
	}
	s.sim.Seed(row.Primary)
	if key := row.SecondaryKey(); key != "" {
		s.sim.Seed(key)
		s.mu.Lock()
		first := !s.paired[key]
		if s.paired == nil {
			s.paired = map[string]bool{}
		}
		s.paired[key] = true
		s.mu.Unlock()
		if first {
			sameEmail(s.sim.Server, row.Primary, key, row.Line)
		}
	}
	return row, ack, nil
}

// queueMetrics returns the queue's metrics: linkbatch_queue_backlog,
// linkbatch_queue_pending and linkbatch_dead_letters_total.
func queueMetrics(src *queue.Source) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "linkbatch_queue_backlog",
			Help: "Requests in the queue not yet delivered to the group, at the last look.",
		}, func() float64 { return float64(src.Stats().Backlog) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "linkbatch_queue_pending",
			Help: "Requests delivered to the group and not yet acknowledged, by any consumer, at the last look.",
		}, func() float64 { return float64(src.Stats().Pending) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "linkbatch_dead_letters_total",
			Help: "Requests this process moved to the dead letters (poison, or failed on their last delivery).",
		}, func() float64 { return float64(src.Stats().DeadLettered) }),
	}
}

// queueLookEvery is how often the queue's backlog and pending requests are
// asked of the broker, for metrics and progress.
const queueLookEvery = 5 * time.Second

// executeQueue runs the pool over the queue with progress shown, looking at
// the queue's depth now and then, and logs the queue's counters at the end.
func (c *command) executeQueue(ctx context.Context, in batch.Source, sink batch.Sink, src *queue.Source) (batch.Summary, error) {
	cfg := c.cfg
	every := c.progressEvery()
	backlog := func() string { return fmt.Sprintf("backlog %d", src.Stats().Backlog) }
	stopProgress := c.showProgress(ctx, nil, backlog, func(ctx context.Context) { c.watchQueue(ctx, src, every) })
	c.log.Info("start", zap.Stringer("in", cfg.queue.in), zap.String("out", cfg.Out), zap.Bool("drain", cfg.Drain),
		zap.Bool("dry_run", cfg.Batch.DryRun), zap.Bool("simulate", cfg.Simulate), zap.Int("workers", cfg.Batch.Workers),
		zap.Stringer("rate", (*rateFlag)(&cfg.Pace.Rate)), zap.Int("burst", cfg.Pace.Burst), zap.Float64("share", cfg.Pace.Share))
	sum, runErr := c.runner.RunSource(ctx, in, sink)
	stopProgress()
	st := src.Stats()
	c.log.Info("queue", zap.Int64("read", st.Read), zap.Int64("acknowledged", st.Acked), zap.Int64("kept", st.Kept),
		zap.Int64("redelivered", st.Redelivered), zap.Int64("dead_letters", st.DeadLettered),
		zap.Int64("backlog", st.Backlog), zap.Int64("pending", st.Pending))
	return sum, runErr
}

// watchQueue asks the broker for the queue's depth every queueLookEvery,
// for the metrics, and logs it every `every` (not at all when 0), until ctx
// is done.
func (c *command) watchQueue(ctx context.Context, src *queue.Source, every time.Duration) {
	t := time.NewTicker(queueLookEvery)
	defer t.Stop()
	var last time.Time
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		pending, backlog, err := src.Depth(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("queue depth", zap.Error(err))
			}
			continue
		}
		if every > 0 && !first && time.Since(last) >= every {
			last = time.Now()
			st := src.Stats()
			c.log.Info("queue progress", zap.Int64("backlog", backlog), zap.Int64("pending", pending),
				zap.Int("in_flight", st.InFlight), zap.Int64("acknowledged", st.Acked), zap.Int64("dead_letters", st.DeadLettered))
		}
	}
}
