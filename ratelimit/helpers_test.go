package ratelimit

import (
	"context"

	"github.com/linkbatch/linkbatch/linker"
)

// The tests drive the Pacer with the linker client's responses and errors,
// turned into Answers the way batch does.

// answerOf is what the Pacer learns from one linker response and error.
func answerOf(resp *linker.Response, err error) Answer {
	var a Answer
	if resp != nil {
		a = Answer{Arrived: true, Date: resp.Date}
		if resp.RateLimit.Known {
			a.Limit, a.Remaining, a.Reset = resp.RateLimit.Limit, resp.RateLimit.Remaining, resp.RateLimit.Reset
		}
	}
	a.RateLimited, a.RetryAt = linker.IsRateLimited(err), linker.RetryAt(err)
	return a
}

// waitTurn is wait without the grant.
func (p *Pacer) waitTurn(ctx context.Context) error {
	_, err := p.wait(ctx)
	return err
}

// observeLink reports resp and err for the oldest request whose answer is
// still due.
func (p *Pacer) observeLink(resp *linker.Response, err error) {
	p.observe(grant{}, answerOf(resp, err))
}

// doLink is Do for a linker call; it returns the last response too.
func (p *Pacer) doLink(ctx context.Context, op func(context.Context) (*linker.Response, error)) (int, *linker.Response, error) {
	var last *linker.Response
	n, err := p.Do(ctx, func(ctx context.Context) (Answer, error) {
		resp, err := op(ctx)
		last = resp
		return answerOf(resp, err), err
	})
	return n, last, err
}
