package natsq

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/internal/queue/queuetest"
)

const stream = "LINKS"

// startNATS runs a NATS server with JetStream and the stream of requests
// (see queuetest.StartNATS).
func startNATS(t testing.TB) (string, jetstream.JetStream) { return queuetest.StartNATS(t, stream) }

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

// broker is the JetStream stream of one test, read by the durable
// consumer "workers".
type broker struct {
	addr string
	js   jetstream.JetStream
}

func (b broker) Config(t testing.TB, _ string) queue.Config { return config(t, b.addr) }

func (b broker) Add(t testing.TB, fields ...string) string { return publish(t, b.js, fields...) }

func (b broker) AddPoison(t testing.TB) map[string]string {
	return map[string]string{
		publishRaw(t, b.js, []byte(`["auth0|x","github|y"]`)):                                                "not a JSON object",
		publishRaw(t, b.js, []byte(`{"primary_user_id":"auth0|x","secondary_user_id":7}`)):                   "not a string",
		publishRaw(t, b.js, []byte(`not json`)):                                                              "not a JSON object",
		publish(t, b.js, "primary_user_id", "auth0|x", "secondary_provider", "github", "link_with", "a.b.c"): "secondary_provider",
	}
}

func (b broker) Source(t testing.TB, cfg queue.Config, opt queue.Options) *queue.Source {
	return source(t, cfg, opt)
}

func (b broker) Abandon(t testing.TB, _ string, n int) {
	t.Helper()
	dead, err := Open(t.Context(), config(t, b.addr), false)
	if err != nil {
		t.Fatal(err)
	}
	if ds, err := dead.Fetch(t.Context(), n, 0); err != nil || len(ds) != n {
		t.Fatalf("the dying consumer fetched %d (%v), want %d", len(ds), err, n)
	}
	dead.Close()
}

// Unsettled counts the consumer's unacknowledged and undelivered messages.
func (b broker) Unsettled(t testing.TB) int {
	t.Helper()
	c, err := b.js.Consumer(t.Context(), stream, "workers")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending + int(info.NumPending)
}

func (b broker) Untouched(t testing.TB) error {
	t.Helper()
	if _, err := b.js.Consumer(t.Context(), stream, "workers"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("consumer lookup: %v, want not found", err)
	}
	return nil
}

// TestScenarios runs what every broker must do (queuetest.RunScenarios)
// against a NATS server with JetStream.
func TestScenarios(t *testing.T) {
	queuetest.RunScenarios(t, func(t *testing.T) queuetest.Broker {
		addr, js := startNATS(t)
		return broker{addr: addr, js: js}
	})
}
