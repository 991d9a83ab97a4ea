package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/linkbatch/linkbatch/ratelimit"
)

// errFlaky stands for a transient failure, such as a dropped connection.
var errFlaky = errors.New("connection reset")

// Do sends a call again after a transient failure and after a refusal for
// the rate limit, learning the tenant's bucket from each answer.
func ExamplePacer_Do() {
	cfg := ratelimit.DefaultConfig()
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 2*time.Millisecond
	p, err := ratelimit.New(cfg, func(err error) bool { return errors.Is(err, errFlaky) })
	if err != nil {
		fmt.Println(err)
		return
	}
	answers := []struct {
		a   ratelimit.Answer
		err error
	}{
		{ratelimit.Answer{}, errFlaky}, // no answer at all
		{ratelimit.Answer{Arrived: true, Limit: 10, Remaining: 0, RateLimited: true}, errors.New("429 Too Many Requests")},
		{ratelimit.Answer{Arrived: true, Limit: 10, Remaining: 9}, nil},
	}
	n := 0
	attempts, err := p.Do(context.Background(), func(context.Context) (ratelimit.Answer, error) {
		a := answers[n]
		n++
		return a.a, a.err
	})
	_, burst, _ := p.Learned()
	st := p.Stats()
	fmt.Println(attempts, err, burst, st.RateLimited, st.Retries)
	// Output: 3 <nil> 10 1 2
}
