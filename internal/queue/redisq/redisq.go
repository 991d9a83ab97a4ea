// Package redisq reads link requests from a Redis stream through a
// consumer group, for a queue.Source: one request per entry, whose fields
// are the input file's column names.
//
// The group is created, when missing, from the start of the stream. A
// consumer reads first its own entries left unacknowledged by an earlier
// run under the same name, then entries other consumers left idle longer
// than claim-idle (XAUTOCLAIM: their consumer died), then new entries
// (XREADGROUP >). The delivery count of an entry is Redis's (XPENDING). An
// entry is acknowledged (XACK) once its result is durable; a poison entry,
// and one that failed on its last delivery, is copied to the dead-letter
// stream with the reason and acknowledged in one MULTI/EXEC. While a row is
// in flight its entry is claimed again by its own consumer every third of
// claim-idle (XCLAIM JUSTID, which does not count a delivery), so that a
// row waiting on the rate limit is not taken by another consumer.
package redisq

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/linkbatch/linkbatch/internal/queue"
)

// Broker is a queue.Broker over one Redis stream and consumer group. Its
// methods follow queue.Broker's concurrency rules.
type Broker struct {
	c      *redis.Client
	cfg    queue.Config
	dryRun bool

	mu        sync.Mutex // guards the read state below (Fetch vs Touch)
	ownDone   bool       // this consumer's own history was read
	ownCursor string
	claimAt   time.Time // next XAUTOCLAIM pass
	claimFrom string
	rangeFrom string // dry run: the last entry id read with XRANGE

	results *ResultStream // nil: results go to a file
}

// Open connects to the Redis of cfg and checks it answers. Unless dryRun,
// it creates the group from the start of the stream when missing (and the
// stream, when missing too). A dry run creates nothing: it reads the
// entries the group has not been handed yet with XRANGE, without the group.
// Errors name the server by cfg.String, which masks the password.
func Open(ctx context.Context, cfg queue.Config, dryRun bool) (*Broker, error) {
	if cfg.Kind != queue.Redis {
		return nil, fmt.Errorf("redis: %s is not a Redis URL", cfg)
	}
	b := &Broker{c: redis.NewClient(options(cfg)), cfg: cfg, dryRun: dryRun, ownCursor: "0", claimFrom: "0-0"}
	if err := b.c.Ping(ctx).Err(); err != nil {
		b.c.Close()
		return nil, fmt.Errorf("redis %s: %w", cfg, err)
	}
	if dryRun {
		b.rangeFrom = "-"
		groups, err := b.c.XInfoGroups(ctx, cfg.Stream).Result()
		if err != nil && !strings.Contains(err.Error(), "no such key") {
			b.c.Close()
			return nil, fmt.Errorf("redis %s: %w", cfg, err)
		}
		for _, g := range groups {
			if g.Name == cfg.Group && g.LastDeliveredID != "0-0" {
				b.rangeFrom = "(" + g.LastDeliveredID
			}
		}
		return b, nil
	}
	err := b.c.XGroupCreateMkStream(ctx, cfg.Stream, cfg.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		b.c.Close()
		return nil, fmt.Errorf("redis %s: create group: %w", cfg, err)
	}
	return b, nil
}

// options are the client options for the server of cfg.
func options(cfg queue.Config) *redis.Options {
	opts := &redis.Options{Addr: cfg.Addr, Username: cfg.Username, Password: cfg.Password, DB: cfg.DB}
	if cfg.TLS {
		host, _, _ := strings.Cut(cfg.Addr, ":")
		opts.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return opts
}

// Client returns the connection, for a caller that writes results to a
// stream of the same server or reads the stream's state.
func (b *Broker) Client() *redis.Client { return b.c }

// Fetch implements queue.Broker.
func (b *Broker) Fetch(ctx context.Context, n int, wait time.Duration) ([]*queue.Delivery, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dryRun {
		return b.fetchRange(ctx, n)
	}
	if !b.ownDone {
		msgs, err := b.read(ctx, b.ownCursor, n, -1)
		if err != nil {
			return nil, err
		}
		if len(msgs) > 0 {
			b.ownCursor = msgs[len(msgs)-1].ID
			return b.deliveries(ctx, msgs, 0)
		}
		b.ownDone = true
	}
	if now := time.Now(); !now.Before(b.claimAt) {
		msgs, next, err := b.c.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: b.cfg.Stream, Group: b.cfg.Group, Consumer: b.cfg.Consumer,
			MinIdle: b.cfg.ClaimIdle, Start: b.claimFrom, Count: int64(n),
		}).Result()
		if err != nil {
			return nil, fmt.Errorf("xautoclaim: %w", err)
		}
		b.claimFrom = next
		if next == "0-0" { // a whole pass: look again a little later
			b.claimAt = now.Add(min(b.cfg.ClaimIdle/4, time.Second))
		}
		if len(msgs) > 0 {
			return b.deliveries(ctx, msgs, 0)
		}
	}
	block := time.Duration(-1)
	if wait > 0 {
		block = wait
	}
	msgs, err := b.read(ctx, ">", n, block)
	if err != nil {
		return nil, err
	}
	return b.deliveries(ctx, msgs, 1)
}

// read is one XREADGROUP from id; block < 0 does not block.
func (b *Broker) read(ctx context.Context, id string, n int, block time.Duration) ([]redis.XMessage, error) {
	streams, err := b.c.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: b.cfg.Group, Consumer: b.cfg.Consumer, Streams: []string{b.cfg.Stream, id},
		Count: int64(n), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("xreadgroup: %w", err)
	}
	if len(streams) == 0 {
		return nil, nil
	}
	return streams[0].Messages, nil
}

// fetchRange reads the next entries with XRANGE (a dry run).
func (b *Broker) fetchRange(ctx context.Context, n int) ([]*queue.Delivery, error) {
	msgs, err := b.c.XRangeN(ctx, b.cfg.Stream, b.rangeFrom, "+", int64(n)).Result()
	if err != nil {
		return nil, fmt.Errorf("xrange: %w", err)
	}
	if len(msgs) > 0 {
		b.rangeFrom = "(" + msgs[len(msgs)-1].ID
	}
	return b.deliveries(ctx, msgs, 1)
}

// deliveries turns entries into deliveries. count is their delivery count
// when known (1 for new entries), else 0: it is then asked of XPENDING.
func (b *Broker) deliveries(ctx context.Context, msgs []redis.XMessage, count int) ([]*queue.Delivery, error) {
	var counts map[string]int
	if count == 0 && len(msgs) > 0 {
		pend, err := b.c.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: b.cfg.Stream, Group: b.cfg.Group, Consumer: b.cfg.Consumer,
			Start: msgs[0].ID, End: msgs[len(msgs)-1].ID, Count: int64(len(msgs)) + 1024,
		}).Result()
		if err != nil {
			return nil, fmt.Errorf("xpending: %w", err)
		}
		counts = make(map[string]int, len(pend))
		for _, p := range pend {
			counts[p.ID] = int(p.RetryCount)
		}
	}
	ds := make([]*queue.Delivery, 0, len(msgs))
	for _, m := range msgs {
		fields := make(map[string]string, len(m.Values))
		poison := ""
		for k, v := range m.Values {
			s, ok := v.(string)
			if !ok {
				poison = "message: field " + strconv.Quote(k) + " is not a string"
			}
			fields[k] = s
		}
		d := &queue.Delivery{ID: m.ID, Row: queue.RowFromFields(fields), Deliveries: count, Ref: m.Values}
		if poison != "" {
			d.Row.Err = errors.New(poison)
		}
		if count == 0 {
			d.Deliveries = max(counts[m.ID], 1)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// Pending implements queue.Broker: the group's pending entries (XPENDING)
// and its lag (XINFO GROUPS; when Redis cannot tell it, 1 if entries were
// added after the last one delivered).
func (b *Broker) Pending(ctx context.Context) (pending, backlog int64, err error) {
	if b.dryRun {
		return 0, 0, nil
	}
	groups, err := b.c.XInfoGroups(ctx, b.cfg.Stream).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("xinfo groups: %w", err)
	}
	for _, g := range groups {
		if g.Name != b.cfg.Group {
			continue
		}
		backlog = g.Lag
		if backlog < 0 {
			backlog = 0
			last, err := b.c.XRevRangeN(ctx, b.cfg.Stream, "+", "-", 1).Result()
			if err != nil {
				return 0, 0, fmt.Errorf("xrevrange: %w", err)
			}
			if len(last) > 0 && last[0].ID != g.LastDeliveredID {
				backlog = 1
			}
		}
		return g.Pending, backlog, nil
	}
	return 0, 0, fmt.Errorf("group %s of stream %s is gone", b.cfg.Group, b.cfg.Stream)
}

// Ack implements queue.Broker (XACK; with PublishResults, the result's
// XADD and the XACK in one MULTI/EXEC).
func (b *Broker) Ack(ctx context.Context, d *queue.Delivery) error {
	if b.results == nil {
		if err := b.c.XAck(ctx, b.cfg.Stream, b.cfg.Group, d.ID).Err(); err != nil {
			return fmt.Errorf("xack: %w", err)
		}
		return nil
	}
	_, err := b.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		b.results.queue(ctx, p, d.ID)
		p.XAck(ctx, b.cfg.Stream, b.cfg.Group, d.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish result and xack: %w", err)
	}
	return nil
}

// Dead-letter entries carry the request's own fields and these.
const (
	FieldReason     = "linkbatch_reason"     // why the entry was dead-lettered
	FieldMessageID  = "linkbatch_message_id" // the entry's id in the stream of requests
	FieldDeliveries = "linkbatch_deliveries" // how often it was delivered
	FieldConsumer   = "linkbatch_consumer"   // the consumer that dead-lettered it
)

// DeadLetter implements queue.Broker: XADD to the dead-letter stream and
// XACK in one MULTI/EXEC.
func (b *Broker) DeadLetter(ctx context.Context, d *queue.Delivery, reason string) error {
	values := map[string]any{}
	if orig, ok := d.Ref.(map[string]any); ok {
		for k, v := range orig {
			values[k] = v
		}
	}
	values[FieldReason] = reason
	values[FieldMessageID] = d.ID
	values[FieldDeliveries] = strconv.Itoa(d.Deliveries)
	values[FieldConsumer] = b.cfg.Consumer
	_, err := b.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		b.results.queue(ctx, p, d.ID)
		p.XAdd(ctx, &redis.XAddArgs{Stream: b.cfg.Dead, Values: values})
		p.XAck(ctx, b.cfg.Stream, b.cfg.Group, d.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	return nil
}

// Redeliver implements queue.Broker: Redis has no negative
// acknowledgement; the entry stays pending, is no longer kept fresh, and is
// claimed again (by any consumer of the group) once idle past claim-idle.
func (b *Broker) Redeliver(context.Context, *queue.Delivery) error { return nil }

// touchScript claims each entry again for its own consumer (resetting its
// idle time, not its delivery count), only while it is still that
// consumer's: an entry another consumer claimed meanwhile is left alone.
var touchScript = redis.NewScript(`
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
`)

// Touch implements queue.Broker.
func (b *Broker) Touch(ctx context.Context, ds []*queue.Delivery) error {
	if b.dryRun || len(ds) == 0 {
		return nil
	}
	args := make([]any, 0, len(ds)+2)
	args = append(args, b.cfg.Group, b.cfg.Consumer)
	for _, d := range ds {
		args = append(args, d.ID)
	}
	if err := touchScript.Run(ctx, b.c, []string{b.cfg.Stream}, args...).Err(); err != nil {
		return fmt.Errorf("touch: %w", err)
	}
	return nil
}

// Release implements queue.Broker: the entries stay pending, and are
// claimed by another consumer (or this one, restarted under the same
// name, at once) after claim-idle.
func (b *Broker) Release(context.Context, []*queue.Delivery) error { return nil }

// Close implements queue.Broker. A consumer that holds no entry leaves
// the group (XGROUP DELCONSUMER), so that consumers named after a host and
// a pid do not pile up in it; one that holds entries stays, for them to be
// claimed.
func (b *Broker) Close() error {
	if !b.dryRun {
		// Deleting a consumer drops its pending entries from the group:
		// the check and the deletion are one script. Its failure leaves
		// only a name in the group.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = delConsumerScript.Run(ctx, b.c, []string{b.cfg.Stream}, b.cfg.Group, b.cfg.Consumer).Err()
		cancel()
	}
	return b.c.Close()
}

// delConsumerScript deletes the consumer from the group if it holds no
// entry.
var delConsumerScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
`)

// NewSource opens the broker of cfg (Open) and returns a queue.Source over it (see queue.NewSource). opt.Heartbeat defaults to a third of
// claim-idle and opt.MaxDeliveries to the URL's.
func NewSource(ctx context.Context, cfg queue.Config, opt queue.Options) (*queue.Source, *Broker, error) {
	b, err := Open(ctx, cfg, opt.DryRun)
	if err != nil {
		return nil, nil, err
	}
	if opt.Heartbeat <= 0 {
		opt.Heartbeat = cfg.ClaimIdle / 3
	}
	if opt.MaxDeliveries == 0 {
		opt.MaxDeliveries = cfg.MaxDeliveries
	}
	return queue.NewSource(b, opt), b, nil
}
