package batch

import (
	"context"
	"time"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// Attempt describes one HTTP request for the Attempt hook.
type Attempt struct {
	Kind        string        // "link", "get_user", "patch_user", "unlink", "get_roles", "get_organizations", "assign_roles" or "add_members"
	Status      int           // the HTTP status of the answer, 0 when none came
	RateLimited bool          // the tenant refused the request for its rate limit
	Latency     time.Duration // from sending the request to its answer or failure
}

// do runs call through the pacer, with its retries, and returns the
// attempts made and the last attempt's response and error.
func (r *Runner) do(ctx context.Context, call func(ctx context.Context) (*linker.Response, error)) (int, *linker.Response, error) {
	var last *linker.Response
	n, err := r.Pacer.Do(ctx, func(ctx context.Context) (ratelimit.Answer, error) {
		resp, err := call(ctx)
		last = resp
		return answerOf(resp, err), err
	})
	return n, last, err
}

// answerOf is what the pacer learns from one response and error.
func answerOf(resp *linker.Response, err error) ratelimit.Answer {
	var a ratelimit.Answer
	if resp != nil {
		a = ratelimit.Answer{Arrived: true, Date: resp.Date}
		if resp.RateLimit.Known {
			a.Limit, a.Remaining, a.Reset = resp.RateLimit.Limit, resp.RateLimit.Remaining, resp.RateLimit.Reset
		}
	}
	a.RateLimited, a.RetryAt = linker.IsRateLimited(err), linker.RetryAt(err)
	return a
}

// attempt reports one request to the Attempt hook.
func (r *Runner) attempt(kind string, resp *linker.Response, err error, start time.Time) {
	if r.Hooks.Attempt == nil {
		return
	}
	a := Attempt{Kind: kind, RateLimited: linker.IsRateLimited(err), Latency: time.Since(start)}
	if resp != nil {
		a.Status = resp.StatusCode
	}
	r.Hooks.Attempt(a)
}

// call makes one paced request of the given kind (see Attempt.Kind):
// send runs through the pacer, with its retries, each attempt under
// Config.Timeout and reported to the Attempt hook. It adds the attempts to
// res and sets res.HTTPStatus to the last answer's status, and returns the
// last attempt's response and error.
func (r *Runner) call(ctx context.Context, kind string, res *Result, send func(ctx context.Context) (*linker.Response, error)) (*linker.Response, error) {
	n, resp, err := r.do(ctx, func(ctx context.Context) (*linker.Response, error) {
		actx, cancel := context.WithTimeout(ctx, r.Config.Timeout)
		defer cancel()
		t0 := time.Now()
		resp, err := send(actx)
		r.attempt(kind, resp, err, t0)
		return resp, err
	})
	res.Attempts += n
	if resp != nil {
		res.HTTPStatus = resp.StatusCode
	}
	return resp, err
}
