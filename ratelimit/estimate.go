package ratelimit

import (
	"math"
	"slices"
	"time"
)

// sample is what one response said about the tenant's token bucket.
type sample struct {
	// at is when the tenant handled the request, on the local clock (the
	// middle of the exchange when its start is known, else its end).
	at time.Time
	// sent and arrived bound the exchange on the local clock: when the
	// request was let through and when its answer came; zero if unknown
	// (at stands in for them).
	sent, arrived time.Time
	// spent is how many of this Pacer's requests the tenant had counted
	// once it handled this one: requests sent up to and including it, less
	// those refused with 429.
	spent     float64
	limit     int       // x-ratelimit-limit
	remaining int       // x-ratelimit-remaining, within [0, limit]
	reset     time.Time // x-ratelimit-reset, server clock; zero if absent
	date      time.Time // Date, server clock; zero if absent
	refused   bool      // answered 429: the tenant took no token
}

// sentAt returns when the request was let through, or at if unknown.
func (s sample) sentAt() time.Time {
	if s.sent.IsZero() {
		return s.at
	}
	return s.sent
}

// arrivedAt returns when the answer came, or at if unknown.
func (s sample) arrivedAt() time.Time {
	if s.arrived.IsZero() {
		return s.at
	}
	return s.arrived
}

// rateEstimate is a refill rate learned from samples.
type rateEstimate struct {
	rate  float64 // tokens per second
	se    float64 // standard error of rate
	known bool    // precise enough to pace by
	// settled is whether the fit spans enough points and time for its
	// rough figure to mean anything: requests let through together reach
	// the tenant in any order, so until the fit spans more than their
	// answers its slope is noise.
	settled bool
}

// estimator learns the refill rate of the tenant's bucket. It is not safe
// for concurrent use (the Pacer guards it) and accepts samples in any order.
//
// The refill rate available to this Pacer is the slope of remaining + spent
// over time: every token the bucket gains is either still there or was spent
// by one of our requests. Tokens taken by other clients of the tenant are
// neither, so this "net" rate is what is left for us. The line only holds
// while the bucket is not full, so a sample that shows a full (or nearly
// full) bucket starts a new segment and earlier samples are dropped. The
// slope is fitted by least squares, which averages out the whole-token
// rounding of remaining and the noise of responses that arrive out of order.
//
// The gross rate, at which the bucket refills whoever spends it, comes from
// x-ratelimit-reset: the limit-remaining missing tokens are back by reset.
// Both counts are rounded (remaining down, reset up to a second), so the
// estimate sums the missing tokens and the seconds to reset over many
// samples, each taken at the middle of its rounding interval. The reset is
// counted from when the tenant took the request's token, but the Date of
// the answer may be stamped any time between then and the answer's
// arrival (after the tenant worked on the request). So the server clock is
// related to the local one by the largest Date-minus-arrival seen, a skew
// no larger than the true one, and the token taken as early as the request
// was sent: the seconds to reset are never counted short, and the gross
// rate errs low, by at most one round trip over the time to reset, never
// high.
type estimator struct {
	window    time.Duration // oldest sample kept, relative to the newest
	maxPoints int
	pts       []sample  // current segment, sorted by at
	deep      []sample  // samples of a bucket at least two short, sorted by at
	from      time.Time // segment start: samples handled before are stale
	limit     int       // bucket size of the segment
	last      rateEstimate
	skew      time.Duration // server clock minus local clock, at least
	skewKnown bool
	// recent holds the samples of the last boundWindow whose exchange
	// times are known, sorted by arrival, for bound.
	recent []sample

	// The estimates are fitted again at most once per refitEvery of
	// samples (see refresh): at thousands of answers a second, fitting
	// on every answer cost most of linkbatch's CPU.
	newest    time.Time // the latest sample's at
	fittedAt  time.Time // newest when the estimates below were made
	fitted    bool      // the estimates below are in use
	stale     bool      // a segment ended: fit again at once
	netEst    rateEstimate
	grossRate float64
	grossOK   bool
	midRate   float64
	midOK     bool
	boundRate float64
}

const (
	estimateWindow     = 20 * time.Second
	estimatePoints     = 8192 // minNetSpan of answers up to 8,192/s: else the rate is never known
	minNetPoints       = 5
	minNetSpan         = time.Second
	maxRelativeError   = 0.08
	minGrossPoints     = 10
	minGrossSpan       = 2 * time.Second
	grossAboveNetSign  = 1.1
	grossBelowNetTimes = 8
	boundWindow        = 5 * time.Second
	boundPoints        = 512
	boundPairs         = 8
	refitEvery         = 10 * time.Millisecond
)

func newEstimator() *estimator {
	return &estimator{window: estimateWindow, maxPoints: estimatePoints}
}

// refresh fits the estimates again unless they were fitted less than
// refitEvery of samples ago and no segment ended since.
func (e *estimator) refresh() {
	if e.fitted && !e.stale && e.newest.Sub(e.fittedAt) < refitEvery {
		return
	}
	e.fitted, e.stale, e.fittedAt = true, false, e.newest
	e.netEst = e.fit()
	if !e.netEst.known && e.last.known {
		e.netEst = e.last
	}
	e.grossRate, e.midRate, e.grossOK = e.grossFit()
	e.midOK = e.grossOK && e.midRate > 0
	e.boundRate = e.boundFit()
}

// add records one sample.
func (e *estimator) add(s sample) {
	if s.at.After(e.newest) {
		e.newest = s.at
	}
	if !s.date.IsZero() {
		if d := s.date.Sub(s.arrivedAt()); !e.skewKnown || d > e.skew {
			e.skew, e.skewKnown = d, true
		}
	}
	if s.limit != e.limit {
		e.keep()
		e.pts, e.deep, e.limit, e.from = e.pts[:0], e.deep[:0], s.limit, time.Time{}
		e.recent = e.recent[:0]
	}
	if !s.sent.IsZero() && !s.arrived.IsZero() {
		e.recent = insertBy(e.recent, s, sample.arrivedAt, boundWindow, boundPoints)
	}
	if !s.reset.IsZero() && s.remaining <= s.limit-2 {
		e.deep = e.insert(e.deep, s)
	}
	if s.at.Before(e.from) {
		return
	}
	if s.remaining >= s.limit-1 {
		// The bucket was full just before this request (it had at least
		// limit tokens before taking one): refill was lost, so only what
		// follows lies on one line.
		e.keep()
		e.from = s.at
		e.pts = slices.DeleteFunc(e.pts, func(p sample) bool { return p.at.Before(s.at) })
	}
	e.pts = e.insert(e.pts, s)
}

// insert adds s to pts, sorted by at, and drops the samples that fell out of
// the window.
func (e *estimator) insert(pts []sample, s sample) []sample {
	return insertBy(pts, s, func(p sample) time.Time { return p.at }, e.window, e.maxPoints)
}

// insertBy adds s to pts, sorted by key (after those of equal key), then
// keeps the newest most samples whose key lies within window of the last.
func insertBy(pts []sample, s sample, key func(sample) time.Time, window time.Duration, most int) []sample {
	k := key(s)
	i, _ := slices.BinarySearchFunc(pts, k, func(p sample, t time.Time) int { return key(p).Compare(t) })
	for i < len(pts) && !key(pts[i]).After(k) {
		i++
	}
	pts = slices.Insert(pts, i, s)
	oldest := key(pts[len(pts)-1]).Add(-window)
	drop := 0
	for drop < len(pts) && (key(pts[drop]).Before(oldest) || len(pts)-drop > most) {
		drop++
	}
	// Slicing the oldest off, rather than moving the rest down, keeps an
	// answer's cost independent of how many samples are kept: append
	// copies what is left only when it grows the array.
	return pts[drop:]
}

// bound returns a refill rate the tenant surely has, from the samples of
// the last few seconds, or 0. It is what the fit cannot give while the
// bucket keeps filling up between answers (a bucket smaller than the rate
// times the round trip): between the handling of an earlier answered
// request i and of the newest one j, the bucket gained remaining_j -
// remaining_i tokens, less one for the rounding, and gave one to each of
// this Pacer's requests sent after i's answer came and answered before j
// was sent (429s aside). Refill lost to a full bucket, and tokens other
// clients took, only make the true refill larger; and no more time than
// from i's sending to j's answer passed meanwhile. Each of up to boundPairs
// earlier answers gives such a rate; bound returns the largest.
func (e *estimator) bound() float64 {
	e.refresh()
	return e.boundRate
}

// boundFit computes bound.
func (e *estimator) boundFit() float64 {
	n := len(e.recent)
	if n < 2 {
		return 0
	}
	j := e.recent[n-1]
	// Candidates: the answers that came before j was sent.
	m, _ := slices.BinarySearchFunc(e.recent, j.sent, func(p sample, t time.Time) int { return p.arrived.Compare(t) })
	best := 0.0
	for c := range min(m, boundPairs) {
		i := e.recent[c*m/min(m, boundPairs)]
		between := 0
		for _, k := range e.recent[:n-1] {
			if !k.refused && !k.sent.Before(i.arrived) && !k.arrived.After(j.sent) {
				between++
			}
		}
		span := j.arrived.Sub(i.sent).Seconds()
		if gained := float64(j.remaining-i.remaining-1+between) / span; span > 0 && gained > best {
			best = gained
		}
	}
	return best
}

// keep remembers the estimate of the current segment before it is dropped.
func (e *estimator) keep() {
	if est := e.fit(); est.known {
		e.last = est
	}
	e.stale = true
}

// net returns the refill rate left for this Pacer: the current segment's
// when it is known, else the last known one, else the current segment's
// rough figure (not known).
func (e *estimator) net() rateEstimate {
	e.refresh()
	return e.netEst
}

// fit fits remaining + spent over time on the current segment.
func (e *estimator) fit() rateEstimate {
	n := len(e.pts)
	if n < 3 {
		return rateEstimate{}
	}
	t0 := e.pts[0].at
	var sx, sy float64
	for _, p := range e.pts {
		sx += p.at.Sub(t0).Seconds()
		sy += float64(p.remaining) + p.spent
	}
	mx, my := sx/float64(n), sy/float64(n)
	var sxx, sxy float64
	for _, p := range e.pts {
		dx := p.at.Sub(t0).Seconds() - mx
		sxx += dx * dx
		sxy += dx * (float64(p.remaining) + p.spent - my)
	}
	if sxx <= 0 {
		return rateEstimate{}
	}
	slope := sxy / sxx
	var ss float64
	for _, p := range e.pts {
		r := float64(p.remaining) + p.spent - my - slope*(p.at.Sub(t0).Seconds()-mx)
		ss += r * r
	}
	// The residuals include the rounding of remaining, whose spread is at
	// least that of a uniform draw from [0, 1).
	se := math.Sqrt(max(ss/float64(n-2), 1.0/12) / sxx)
	span := e.pts[n-1].at.Sub(t0)
	settled := n >= minNetPoints && span >= minNetSpan
	known := settled && slope > 0 && se <= maxRelativeError*slope
	return rateEstimate{rate: slope, se: se, known: known, settled: settled}
}

// gross returns the rate at which the bucket refills, from the reset times
// of the samples in the window, and whether there were enough of them.
func (e *estimator) gross() (float64, bool) {
	e.refresh()
	return e.grossRate, e.grossOK
}

// centred returns the rate at which the bucket refills, from the same reset
// times as gross but with each token taken in the middle of its exchange
// rather than as early as the request was sent: it errs low by half a
// round trip over the time to reset where gross errs by a whole one, and
// errs high only when the tenant stamps its Date more than a network
// round trip after taking the token. It is what a Pacer holding a share
// of the bucket takes the tenant's rate for (see bucket.retune): the part
// of the refill the estimate misses goes unclaimed by every holder.
func (e *estimator) centred() (float64, bool) {
	e.refresh()
	return e.midRate, e.midOK
}

// grossFit computes gross and centred, and whether there were enough
// samples for them.
func (e *estimator) grossFit() (gross, centred float64, ok bool) {
	if !e.skewKnown {
		return 0, 0, false
	}
	var missing, secs, mid float64
	var n int
	var first, last time.Time
	for _, p := range e.deep {
		h := p.reset.Sub(p.sentAt().Add(e.skew)).Seconds() - 0.5
		if h <= 0 {
			continue
		}
		missing += float64(p.limit-p.remaining) - 0.5
		secs += h
		mid += p.reset.Sub(p.at.Add(e.skew)).Seconds() - 0.5
		if n == 0 {
			first = p.at
		}
		last = p.at
		n++
	}
	if n < minGrossPoints || last.Sub(first) < minGrossSpan || secs <= 0 {
		return 0, 0, false
	}
	if mid <= 0 {
		return missing / secs, 0, true
	}
	return missing / secs, missing / mid, true
}

// learned returns the tenant's refill rate, and whether it is known: the
// net rate, unless the reset times show the bucket refilling clearly faster
// (other clients spend the difference). A gross rate above twice the net
// one is taken for a misreading of the reset time and ignored.
func (e *estimator) learned() (float64, bool) {
	net := e.net()
	g, ok := e.gross()
	switch {
	case !net.known:
		return net.rate, false
	case ok && g > grossAboveNetSign*net.rate && g <= grossBelowNetTimes*net.rate:
		return g, true
	}
	return net.rate, true
}

// others reports whether the reset times show the bucket refilling clearly
// faster than the rate left for this Pacer: other clients spend the
// difference (see learned).
func (e *estimator) others() bool {
	net := e.net()
	g, ok := e.gross()
	return net.settled && ok && g > grossAboveNetSign*(net.rate+2*net.se)
}
