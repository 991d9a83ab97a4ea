// Package natsq reads link requests from a NATS JetStream stream through a
// durable pull consumer, for a queue.Source: one request per message, whose
// body is a JSON object with the input file's column names as keys.
//
// The durable consumer is created, or updated, with explicit
// acknowledgements, AckWait = claim-idle and MaxDeliver = max-deliveries + 1
// (the extra delivery lets a message its consumers died on be settled, with
// a result, instead of vanishing). The server redelivers what is not
// acknowledged in time; a row in flight is kept from that by InProgress
// every third of AckWait. A message is acknowledged with a confirmed ack
// (DoubleAck) once its result is durable; a poison message, and one that
// failed on its last delivery, is terminated (Term, with the reason, which
// the server's advisory carries). A transient failure is redelivered after
// claim-idle (NakWithDelay). The message id is the stream sequence.
package natsq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/linkbatch/linkbatch/internal/queue"
)

// Broker is a queue.Broker over one JetStream stream and durable consumer.
type Broker struct {
	nc     *nats.Conn
	cfg    queue.Config
	cons   jetstream.Consumer
	dryRun bool
}

// Open connects to the NATS server of cfg and binds the durable consumer,
// creating it when missing; the stream must exist. A dry run creates
// nothing: it reads, through an ordered consumer that acknowledges nothing,
// the messages after the durable consumer's acknowledgement floor (all of
// them when it does not exist). Errors name the server by cfg.String, which
// masks the password.
func Open(ctx context.Context, cfg queue.Config, dryRun bool) (*Broker, error) {
	if cfg.Kind != queue.NATS {
		return nil, fmt.Errorf("nats: %s is not a NATS URL", cfg)
	}
	opts := []nats.Option{nats.Name("linkbatch"), nats.MaxReconnects(-1)}
	if cfg.Username != "" || cfg.Password != "" {
		opts = append(opts, nats.UserInfo(cfg.Username, cfg.Password))
	}
	nc, err := nats.Connect("nats://"+cfg.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", cfg, err)
	}
	b := &Broker{nc: nc, cfg: cfg, dryRun: dryRun}
	fail := func(what string, err error) (*Broker, error) {
		nc.Close()
		return nil, fmt.Errorf("nats %s: %s: %w", cfg, what, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fail("jetstream", err)
	}
	st, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return fail("stream "+cfg.Stream, err)
	}
	if dryRun {
		start := uint64(1)
		if c, err := st.Consumer(ctx, cfg.Group); err == nil {
			info, err := c.Info(ctx)
			if err != nil {
				return fail("consumer info", err)
			}
			start = info.AckFloor.Stream + 1
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fail("consumer "+cfg.Group, err)
		}
		if b.cons, err = st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
		}); err != nil {
			return fail("ordered consumer", err)
		}
		return b, nil
	}
	b.cons, err = st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       cfg.Group,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.ClaimIdle,
		MaxDeliver:    cfg.MaxDeliveries + 1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fail("consumer "+cfg.Group, err)
	}
	return b, nil
}

// Fetch implements queue.Broker. JetStream itself hands out redeliveries
// (messages not acknowledged within AckWait, or handed back) before new
// ones.
func (b *Broker) Fetch(ctx context.Context, n int, wait time.Duration) ([]*queue.Delivery, error) {
	var (
		mb  jetstream.MessageBatch
		err error
	)
	if wait > 0 {
		fctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		mb, err = b.cons.Fetch(n, jetstream.FetchContext(fctx))
	} else {
		mb, err = b.cons.FetchNoWait(n)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	var ds []*queue.Delivery
	for msg := range mb.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			return ds, fmt.Errorf("message metadata: %w", err)
		}
		ds = append(ds, &queue.Delivery{
			ID: strconv.FormatUint(md.Sequence.Stream, 10), Row: queue.RowFromJSON(msg.Data()),
			Deliveries: int(md.NumDelivered), Ref: msg,
		})
	}
	if err := mb.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return ds, fmt.Errorf("fetch: %w", err)
	}
	return ds, nil
}

// Pending implements queue.Broker: the consumer's unacknowledged messages
// and the messages not yet delivered.
func (b *Broker) Pending(ctx context.Context) (pending, backlog int64, err error) {
	if b.dryRun {
		return 0, 0, nil
	}
	info, err := b.cons.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("consumer info: %w", err)
	}
	return int64(info.NumAckPending), int64(info.NumPending), nil
}

func msgOf(d *queue.Delivery) jetstream.Msg { return d.Ref.(jetstream.Msg) }

// Ack implements queue.Broker with an acknowledgement the server confirms.
func (b *Broker) Ack(ctx context.Context, d *queue.Delivery) error {
	if err := msgOf(d).DoubleAck(ctx); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// DeadLetter implements queue.Broker: JetStream has no dead-letter stream
// of its own; the message is terminated with the reason (the server
// publishes it in a $JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED advisory,
// and logs name it) and never delivered again.
func (b *Broker) DeadLetter(ctx context.Context, d *queue.Delivery, reason string) error {
	if err := msgOf(d).TermWithReason(reason); err != nil {
		return fmt.Errorf("term: %w", err)
	}
	if err := b.flush(ctx); err != nil {
		return fmt.Errorf("term: %w", err)
	}
	return nil
}

// flush waits until the server has everything sent so far: the
// acknowledgements that have no reply of their own reached it.
func (b *Broker) flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return b.nc.FlushWithContext(ctx)
}

// Redeliver implements queue.Broker: the message comes back after
// claim-idle.
func (b *Broker) Redeliver(ctx context.Context, d *queue.Delivery) error {
	if err := msgOf(d).NakWithDelay(b.cfg.ClaimIdle); err != nil {
		return fmt.Errorf("nak: %w", err)
	}
	return nil
}

// Touch implements queue.Broker (InProgress).
func (b *Broker) Touch(ctx context.Context, ds []*queue.Delivery) error {
	if b.dryRun {
		return nil
	}
	var errs []error
	for _, d := range ds {
		errs = append(errs, msgOf(d).InProgress())
	}
	return errors.Join(errs...)
}

// Release implements queue.Broker: the messages are handed back at once
// (Nak), for another consumer.
func (b *Broker) Release(ctx context.Context, ds []*queue.Delivery) error {
	if b.dryRun {
		return nil
	}
	var errs []error
	for _, d := range ds {
		errs = append(errs, msgOf(d).Nak())
	}
	errs = append(errs, b.flush(ctx))
	return errors.Join(errs...)
}

// Close implements queue.Broker.
func (b *Broker) Close() error {
	b.nc.Close()
	return nil
}

// NewSource opens the broker of cfg (Open) and returns a queue.Source over
// it (see queue.NewSource). opt.Heartbeat defaults to a third of
// claim-idle and opt.MaxDeliveries to the URL's.
func NewSource(ctx context.Context, cfg queue.Config, opt queue.Options) (*queue.Source, error) {
	b, err := Open(ctx, cfg, opt.DryRun)
	if err != nil {
		return nil, err
	}
	if opt.Heartbeat <= 0 {
		opt.Heartbeat = cfg.ClaimIdle / 3
	}
	if opt.MaxDeliveries == 0 {
		opt.MaxDeliveries = cfg.MaxDeliveries
	}
	return queue.NewSource(b, opt), nil
}
