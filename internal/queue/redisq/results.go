package redisq

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/linkbatch/linkbatch/batch"
)

// ResultStream is a batch.Sink that publishes each result as an entry of a
// stream on the same Redis as the requests, its fields the results file's
// columns (message_id included). The entry is written in the same
// MULTI/EXEC as the request's acknowledgement (or dead letter), so that
// neither happens without the other: a consumer killed at any point leaves
// either both or neither, and a request redelivered after that has no
// result yet. Append holds the result until then; Flush has nothing to do.
// It is safe for concurrent use.
type ResultStream struct {
	name string

	mu      sync.Mutex
	pending map[string]batch.Result // by message id
}

// PublishResults makes b publish results to the stream name with each
// acknowledgement and returns the sink to give the pool. It must be called
// before the first Fetch.
func (b *Broker) PublishResults(name string) (*ResultStream, error) {
	if name == "" || name == b.cfg.Stream || name == b.cfg.Dead {
		return nil, fmt.Errorf("results stream %q: must be named, and differ from the requests and the dead letters", name)
	}
	b.results = &ResultStream{name: name, pending: map[string]batch.Result{}}
	return b.results, nil
}

// Append implements batch.Sink: it holds res until its message is
// acknowledged. A result without a message id is refused.
func (s *ResultStream) Append(res batch.Result) error {
	if res.MessageID == "" {
		return errors.New("write results: a result without a message id cannot go to a results stream")
	}
	s.mu.Lock()
	s.pending[res.MessageID] = res
	s.mu.Unlock()
	return nil
}

// Flush implements batch.Sink; results are written with their
// acknowledgements.
func (s *ResultStream) Flush() error { return nil }

// take removes and returns the result held for the message id.
func (s *ResultStream) take(id string) (batch.Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := s.pending[id]
	delete(s.pending, id)
	return res, ok
}

// queue adds, to a MULTI/EXEC, the XADD of the result held for id, if any.
func (s *ResultStream) queue(ctx context.Context, p redis.Pipeliner, id string) {
	if s == nil {
		return
	}
	res, ok := s.take(id)
	if !ok {
		return // kept: its result was published earlier
	}
	vals := make([]any, 0, 24)
	for k, v := range res.Fields() {
		vals = append(vals, k, v)
	}
	p.XAdd(ctx, &redis.XAddArgs{Stream: s.name, Values: vals})
}
