package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/linkbatch/linkbatch/batch"
)

// Delivery is one delivery of a message, as a Broker hands it over.
type Delivery struct {
	ID         string    // the message id: a stream entry id or a stream sequence
	Row        batch.Row // the request, decoded; Err set for a poison message
	Deliveries int       // times delivered, this one included
	Ref        any       // the broker's handle of the message
}

// Broker is one broker's side of a Source: redisq and natsq implement it.
// Its methods are called from one goroutine at a time, except Touch, which
// the heartbeat calls concurrently with the others.
type Broker interface {
	// Fetch returns up to n messages for this consumer: its own unacknowledged
	// ones left by an earlier run first, then messages of other consumers
	// idle past the claim time, then new ones. It waits up to wait for one
	// to come (0: not at all) and returns none when none came.
	Fetch(ctx context.Context, n int, wait time.Duration) ([]*Delivery, error)
	// Pending returns the messages delivered to the group and not
	// acknowledged, by any consumer, and the backlog (messages not
	// delivered yet).
	Pending(ctx context.Context) (pending, backlog int64, err error)
	// Ack acknowledges d: the broker forgets it.
	Ack(ctx context.Context, d *Delivery) error
	// DeadLetter moves d to the dead letters with the reason and
	// acknowledges it, both or neither.
	DeadLetter(ctx context.Context, d *Delivery, reason string) error
	// Redeliver leaves d for a later delivery, to this consumer or another.
	Redeliver(ctx context.Context, d *Delivery) error
	// Touch tells the broker this consumer is still working on ds, so that
	// no other consumer claims them.
	Touch(ctx context.Context, ds []*Delivery) error
	// Release hands back, at Close, messages read and never settled.
	Release(ctx context.Context, ds []*Delivery) error
	// Close closes the connection.
	Close() error
}

// Options are how a Source reads its broker.
type Options struct {
	// MaxDeliveries is the delivery after which a message that failed for a
	// transient reason is not delivered again: its failed result is written
	// and it goes to the dead letters. A message delivered more often (its
	// consumers died on it) goes there at once, with an invalid result.
	MaxDeliveries int
	// Drain ends reading (batch.ErrEndOfInput) once nothing new, nothing
	// claimable and nothing in flight remains; otherwise Read waits for
	// messages until its context is done.
	Drain bool
	// DryRun acknowledges nothing.
	DryRun bool
	// Done reports whether the results file already holds the result of a
	// message (it was written and the run stopped before the
	// acknowledgement): such a message is acknowledged without a second
	// result (batch.Row.Kept). May be nil.
	Done func(id string) bool
	// Heartbeat is how often the messages in flight are touched (0: one
	// third of ClaimIdle as the broker sees it; the caller sets it).
	Heartbeat time.Duration
	// Poll is how long one Fetch waits for new messages, and how long a
	// drain waits before it looks again at messages other consumers hold.
	Poll time.Duration
	// Fetch is how many messages one Fetch asks for.
	Fetch int
	Log   *zap.Logger
}

// Stats are a Source's counters.
type Stats struct {
	Read         int64 // messages handed to the pool
	Acked        int64 // acknowledged (dead letters included)
	DeadLettered int64 // moved to the dead letters
	Redelivered  int64 // handed back for a later delivery
	Kept         int64 // acknowledged without a result: the result was written earlier
	InFlight     int   // handed out, not settled
	Held         int   // read, held back behind the same pair in flight
	Pending      int64 // the group's unacknowledged messages, at the last look
	Backlog      int64 // messages not yet delivered to the group, at the last look
}

// Source is a batch.Source and batch.Redeliverer over a Broker: it hands out
// one row per message, acknowledges a message once the pool has made its
// result durable, sends poison and exhausted messages to the dead letters,
// keeps the messages it works on from being claimed by another consumer, and
// never has two messages for the same secondary account in flight at once:
// the second waits until the first is settled, so that it meets the first's
// outcome (already linked) instead of racing it.
//
// Lines are numbered from 1 in the order rows are handed out; a message is
// named by its id (batch.Row.MessageID). Read is called from one goroutine;
// the AckFuncs, Redeliver and Stats from any.
type Source struct {
	b   Broker
	opt Options
	log *zap.Logger

	mu       sync.Mutex
	line     int
	buf      []*Delivery       // fetched, not yet looked at
	held     []*Delivery       // waiting for their key to be free
	inflight map[int]*Delivery // by line
	keys     map[string]int    // key of a valid row in flight -> its line
	exhaust  map[int]bool      // lines whose Redeliver said no: dead-letter them
	settled  chan struct{}     // closed and replaced whenever a message settles
	stats    Stats
	all      map[string]struct{} // ids in flight or held, so a duplicate delivery is dropped

	stop context.CancelFunc
	hb   sync.WaitGroup
}

// NewSource returns a Source over b and starts its heartbeat; Close stops
// it and closes b.
func NewSource(b Broker, opt Options) *Source {
	if opt.Log == nil {
		opt.Log = zap.NewNop()
	}
	if opt.Poll <= 0 {
		opt.Poll = time.Second
	}
	if opt.Fetch <= 0 {
		opt.Fetch = 64
	}
	if opt.Heartbeat <= 0 {
		opt.Heartbeat = 10 * time.Second
	}
	s := &Source{
		b: b, opt: opt, log: opt.Log,
		inflight: map[int]*Delivery{}, keys: map[string]int{}, exhaust: map[int]bool{},
		settled: make(chan struct{}), all: map[string]struct{}{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.hb.Go(func() { s.heartbeat(ctx) })
	return s
}

// heartbeat touches the messages in flight and held until ctx is done.
func (s *Source) heartbeat(ctx context.Context) {
	t := time.NewTicker(s.opt.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		ds := make([]*Delivery, 0, len(s.inflight)+len(s.held)+len(s.buf))
		for _, d := range s.inflight {
			ds = append(ds, d)
		}
		ds = append(append(ds, s.held...), s.buf...)
		s.mu.Unlock()
		if len(ds) == 0 {
			continue
		}
		if err := s.b.Touch(ctx, ds); err != nil && ctx.Err() == nil {
			s.log.Warn("queue heartbeat", zap.Error(err))
		}
	}
}

// key is what two requests in flight must not share: the secondary account
// (a pair given twice, or two primaries for one secondary), or, for a
// link_with row, the primary and the token.
func key(row batch.Row) string {
	if k := row.SecondaryKey(); k != "" {
		return "s\x00" + k
	}
	return "w\x00" + row.Primary + "\x00" + row.LinkWith
}

// Read returns the next row: a held row whose pair is no longer in flight,
// else the next message fetched. In drain mode it returns
// batch.ErrEndOfInput once nothing is left (see Options.Drain); it returns
// ctx's error when ctx is done, and the broker's error, wrapped as "read
// queue: ...", when fetching fails.
func (s *Source) Read(ctx context.Context) (batch.Row, batch.AckFunc, error) {
	for {
		if err := ctx.Err(); err != nil {
			return batch.Row{}, nil, err
		}
		if row, ack, ok, err := s.next(ctx); ok || err != nil {
			return row, ack, err
		}
		if err := s.waitHeld(ctx); err != nil {
			return batch.Row{}, nil, err
		}
		ds, err := s.b.Fetch(ctx, s.opt.Fetch, s.wait())
		if err != nil {
			if ctx.Err() != nil {
				return batch.Row{}, nil, ctx.Err()
			}
			return batch.Row{}, nil, fmt.Errorf("read queue: %w", err)
		}
		if len(ds) > 0 {
			s.mu.Lock()
			s.buf = append(s.buf, ds...)
			s.mu.Unlock()
			continue
		}
		if done, err := s.drained(ctx); err != nil || done {
			if err == nil {
				err = batch.ErrEndOfInput
			}
			return batch.Row{}, nil, err
		}
	}
}

// maxHeld bounds the messages held behind a request for the same secondary
// in flight: past it, nothing more is fetched until one settles.
const maxHeld = 1024

// waitHeld waits, while maxHeld messages are held, until one settles.
func (s *Source) waitHeld(ctx context.Context) error {
	for {
		s.mu.Lock()
		full, settled := len(s.held) >= maxHeld, s.settled
		s.mu.Unlock()
		if !full {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-settled:
		}
	}
}

// wait is how long a Fetch may wait: in a drain, not at all while rows are
// in flight or held (they settle meanwhile), else one Poll.
func (s *Source) wait() time.Duration {
	if s.opt.Drain {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.held) > 0 {
		return 0
	}
	return s.opt.Poll
}

// drained is called after a Fetch found nothing: in follow mode it waits
// for a held row to free up when there is one; in a drain it reports
// whether nothing is left, and otherwise waits until a row settles or a
// Poll passes.
func (s *Source) drained(ctx context.Context) (bool, error) {
	s.mu.Lock()
	busy := len(s.inflight) > 0 || len(s.held) > 0
	held := len(s.held) > 0
	settled := s.settled
	s.mu.Unlock()
	if !s.opt.Drain && !held {
		return false, nil
	}
	if s.opt.Drain && !busy {
		if s.opt.DryRun {
			return true, nil
		}
		pending, backlog, err := s.b.Pending(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, fmt.Errorf("read queue: %w", err)
		}
		s.mu.Lock()
		s.stats.Pending, s.stats.Backlog = pending, backlog
		s.mu.Unlock()
		if pending == 0 && backlog == 0 {
			return true, nil
		}
	}
	t := time.NewTimer(s.opt.Poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-settled:
	case <-t.C:
	}
	return false, nil
}

// next hands out a held row whose key is free, or the next fetched message;
// ok is false when there is neither.
func (s *Source) next(ctx context.Context) (batch.Row, batch.AckFunc, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, d := range s.held {
		if _, busy := s.keys[key(d.Row)]; !busy {
			s.held = append(s.held[:i], s.held[i+1:]...)
			row, ack := s.handOut(d)
			return row, ack, true, nil
		}
	}
	for len(s.buf) > 0 {
		d := s.buf[0]
		s.buf = s.buf[1:]
		if _, dup := s.all[d.ID]; dup {
			continue // delivered again while we hold it: the copy we hold settles it
		}
		d.Row = d.Row.Check()
		switch {
		case s.opt.Done != nil && s.opt.Done(d.ID):
			d.Row.Kept = true
		case d.Row.Err != nil:
		case s.opt.MaxDeliveries > 0 && d.Deliveries > s.opt.MaxDeliveries:
		default:
			if _, busy := s.keys[key(d.Row)]; busy {
				s.all[d.ID] = struct{}{}
				s.held = append(s.held, d)
				s.log.Info("message held: the same pair is in flight", zap.String("message_id", d.ID))
				continue
			}
		}
		row, ack := s.handOut(d)
		return row, ack, true, nil
	}
	return batch.Row{}, nil, false, nil
}

// handOut numbers d's row and records it in flight; s.mu is held.
func (s *Source) handOut(d *Delivery) (batch.Row, batch.AckFunc) {
	s.line++
	line := s.line
	row := d.Row
	row.Line, row.MessageID = line, d.ID
	reason := ""
	switch {
	case row.Err != nil: // also when kept: its dead letter may be what is missing
		reason = "poison: " + row.Err.Error()
	case row.Kept:
	case s.opt.MaxDeliveries > 0 && d.Deliveries > s.opt.MaxDeliveries:
		reason = fmt.Sprintf("delivered %d times, more than max-deliveries %d, without a result", d.Deliveries, s.opt.MaxDeliveries)
		row.Err = errors.New(reason + "; moved to the dead letters")
	default:
		s.keys[key(row)] = line
	}
	s.inflight[line] = d
	s.all[d.ID] = struct{}{}
	s.stats.Read++
	if row.Kept {
		s.stats.Kept++
	}
	return row, func(ctx context.Context) error { return s.ack(ctx, line, reason) }
}

// ack settles the message of line once its result is durable: a poison or
// exhausted message goes to the dead letters, any other is acknowledged.
func (s *Source) ack(ctx context.Context, line int, reason string) error {
	s.mu.Lock()
	d, ok := s.inflight[line]
	if ok && reason == "" && s.exhaust[line] {
		reason = fmt.Sprintf("failed on delivery %d of %d", d.Deliveries, s.opt.MaxDeliveries)
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("message of line %d is not in flight", line)
	}
	var err error
	switch {
	case s.opt.DryRun:
	case reason != "":
		err = s.b.DeadLetter(ctx, d, reason)
	default:
		err = s.b.Ack(ctx, d)
	}
	if err != nil {
		return fmt.Errorf("message %s: %w", d.ID, err)
	}
	s.mu.Lock()
	if !s.opt.DryRun {
		s.stats.Acked++
		if reason != "" {
			s.stats.DeadLettered++
		}
	}
	s.settle(line, d)
	s.mu.Unlock()
	if reason != "" && !s.opt.DryRun {
		s.log.Warn("message moved to the dead letters", zap.String("message_id", d.ID), zap.String("reason", reason))
	}
	return nil
}

// settle forgets the message of line; s.mu is held.
func (s *Source) settle(line int, d *Delivery) {
	delete(s.inflight, line)
	delete(s.exhaust, line)
	delete(s.all, d.ID)
	if l, ok := s.keys[key(d.Row)]; ok && l == line {
		delete(s.keys, key(d.Row))
	}
	close(s.settled)
	s.settled = make(chan struct{})
}

// Redeliver hands the message of row back to the broker for a later
// delivery when it has deliveries left (see batch.Redeliverer); on its last
// delivery it returns false and the message goes to the dead letters once
// its failed result is written. A dry run hands nothing back.
func (s *Source) Redeliver(ctx context.Context, row batch.Row) (bool, error) {
	s.mu.Lock()
	d, ok := s.inflight[row.Line]
	if !ok {
		s.mu.Unlock()
		return false, fmt.Errorf("message of line %d is not in flight", row.Line)
	}
	if s.opt.DryRun || (s.opt.MaxDeliveries > 0 && d.Deliveries >= s.opt.MaxDeliveries) {
		s.exhaust[row.Line] = !s.opt.DryRun
		s.mu.Unlock()
		return false, nil
	}
	s.mu.Unlock()
	if err := s.b.Redeliver(ctx, d); err != nil {
		return false, fmt.Errorf("message %s: %w", d.ID, err)
	}
	s.mu.Lock()
	s.stats.Redelivered++
	s.settle(row.Line, d)
	s.mu.Unlock()
	return true, nil
}

// Stats returns the counters so far.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.InFlight, st.Held = len(s.inflight), len(s.held)
	return st
}

// Depth asks the broker for the group's pending messages and backlog, for
// progress and metrics; it is safe to call while Read runs.
func (s *Source) Depth(ctx context.Context) (pending, backlog int64, err error) {
	pending, backlog, err = s.b.Pending(ctx)
	if err == nil {
		s.mu.Lock()
		s.stats.Pending, s.stats.Backlog = pending, backlog
		s.mu.Unlock()
	}
	return pending, backlog, err
}

// Close stops the heartbeat, hands back the messages read and not settled
// (rows the run stopped before finishing: the broker delivers them again)
// and closes the broker.
func (s *Source) Close() error {
	s.stop()
	s.hb.Wait()
	s.mu.Lock()
	var left []*Delivery
	for _, d := range s.inflight {
		left = append(left, d)
	}
	left = append(append(left, s.held...), s.buf...)
	s.inflight, s.held, s.buf = map[int]*Delivery{}, nil, nil
	s.mu.Unlock()
	var err error
	if len(left) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.b.Release(ctx, left)
		cancel()
	}
	return errors.Join(err, s.b.Close())
}
