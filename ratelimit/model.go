package ratelimit

import (
	"math"
	"slices"
	"time"

	"golang.org/x/time/rate"
)

const (
	// startRate is the pace, in requests per second, until the tenant's
	// refill rate is learned: the smallest plan's sustained limit.
	startRate = 2
	// minRate is the slowest pace: other clients may take the whole
	// refill for a while, but a request now and then shows when they stop.
	minRate = 0.1
	// marginStep is how many tokens each 429 adds to the cushion the
	// Pacer leaves in the tenant's bucket; marginDecay is how much each
	// accepted request takes off again, marginDecayShared while others
	// draw on the bucket too: a cushion kept long by one Pacer and not by
	// the others would keep it behind them (see the package doc).
	marginStep        = 1
	marginDecay       = 1.0 / 512
	marginDecayShared = 1.0 / 64
	// reserveTokens is the common reserve: while the answers show other
	// clients drawing on the tenant's bucket, the Pacer claims no share
	// of its last reserveTokens tokens (at most a quarter of the bucket),
	// and takes the bucket down to them as the signal to cut its share.
	// sharingKept is how long the Pacer goes on taking others for
	// present after the answers last showed them.
	reserveTokens = 2
	sharingKept   = 10 * time.Second
	// marksKept is how many accepted answers spent compares each new one
	// with; othersSlack is how many tokens more than the Pacer's own
	// requests explain an answer must show gone before it counts.
	// probeAfter is when, after its first claim, the Pacer lets one more
	// request through to see whether others claimed the same tokens:
	// a little over a fast round trip, so that where the claim's answers
	// come back first, a refusal among them holds the probe back.
	marksKept   = 16
	othersSlack = 1
	probeAfter  = 60 * time.Millisecond
	// The share of the tenant's refill the Pacer claims follows additive
	// increase, multiplicative decrease (see the package doc): it grows
	// by fracIncrease per second, and each time the tenant's bucket shows
	// empty (or refuses a request) it is cut by fracCut, or by
	// fracCutShared while others draw on the bucket too, at most once per
	// round trip, down to fracMin. After a refusal the announced bucket
	// cannot explain (a hidden limit), the Pacer paces on its own at
	// hiddenRate: nine tenths of the rate accepted lately, cut by
	// hiddenCut at each later refusal, growing back by hiddenRecover of
	// itself per second to just below the rate accepted when refused, and
	// above it by hiddenProbe per second.
	fracIncrease  = 0.2
	fracCut       = 0.8
	fracCutShared = 0.7
	fracMin       = 1.0 / 64
	hiddenCut     = 0.85
	hiddenProbe   = 0.003
	hiddenRecover = 0.2
	// accWindow is the time constant of the moving count of accepted
	// requests that measures the rate a hidden limit lets through.
	accWindow = 2 * time.Second
	minCutGap = 200 * time.Millisecond
	// fracStart is frac until the answers show whether others draw on
	// the bucket: a quarter, so that four Pacers started at once do not
	// all spend the whole bucket. minClaim is the fewest tokens of a full
	// bucket a claim is allowed to shrink to.
	fracStart = 0.25
	minClaim  = 10
	// refusedKept bounds the list of recent 429 answers kept by sequence.
	refusedKept = 1024
	// latenciesKept is how many recent request latencies are kept.
	latenciesKept = 64
	// forgetAfter is when a request let through is taken for one whose
	// answer will never be reported.
	forgetAfter = 5 * time.Minute
	// grossCapRefill is the least time, in seconds, the tenant's bucket
	// takes to refill for its reset times to cap the pace.
	grossCapRefill = 5
	// probeAnswers is the least number of answers, and probeSpan the
	// least time in seconds of refill, that one look at the slack left in
	// the tenant's bucket spans (see Pacer.probe).
	probeAnswers = 8
	probeSpan    = 1
)

// bucket is the Pacer's model of the tenant's rate-limit bucket, and the
// caps the gate is tuned to from it: what the answers said of the bucket
// (observe, settle, refuse, learn), the slack they show unused (probe), the
// rate and burst paced at (retune, pace), and how a refusal for the rate
// limit slows them (rebuff). It is pure given now: it reads no clock, takes
// no lock and starts nothing, so a test can drive it with made-up times.
// The Pacer calls it under its mutex.
type bucket struct {
	cfg   Config
	share float64
	// allowance is the policy caps alone: a limiter no one waits on,
	// charged for every request let through, that bounds how far the gate
	// is raised. It is nil while there are no policy caps.
	allowance  *rate.Limiter
	policyRate float64 // +Inf while there are no policy caps
	policyCap  float64
	mirrorRate float64   // the tenant's refill usable by this Pacer
	mirrorCap  float64   // the tenant's bucket size usable by this Pacer
	mirroring  bool      // the mirror caps are in force
	seen       bool      // an answer said how big the tenant's bucket is
	claimFrom  time.Time // answers the tenant handled before this claim no tokens (see learn)
	claimSent  time.Time // nor do answers to requests let through before this
	claimSeen  bool      // a fresh answer came after the first claim
	size       int       // the tenant's bucket size, 0 until seen
	est        *estimator
	margin     float64         // tokens left in the tenant's bucket as a cushion
	sharedAt   time.Time       // when the answers last showed others drawing on the bucket
	slack      float64         // tokens the answers showed unused, added to the gate's level
	probeFrom  int64           // slack is looked for in answers to requests after this one
	probeN     int             // answers looked at since probeFrom
	probeMin   int             // the least remaining among them
	frac       float64         // share of the tenant's refill and tokens claimed (AIMD)
	fracAt     time.Time       // when frac last grew
	cutAt      time.Time       // when frac was last cut
	hidden     bool            // a refusal showed a limit the headers do not announce
	hiddenRate float64         // the pace under the hidden limit
	hiddenPeak float64         // the rate accepted when the last refusal came
	acc        float64         // moving count of accepted requests (accWindow)
	accAt      time.Time       // when acc was last brought up to date
	slowest    time.Duration   // the slowest recent request
	sent       int64           // requests let through; the last one's sequence number
	pending    []grant         // requests let through, answer not reported yet
	readings   []reading       // of recent answers that said how full the bucket was
	marks      []mark          // of the last few accepted answers, to tell others' spending (see spent)
	latencies  []time.Duration // of recent requests, newest last
	refused    []int64         // sequence numbers of recent refusals, ascending
	nRefused   int64           // refusals in all
}

// grant is one request let through: its sequence number, when, and
// whether the gate held it back first (the gate, not the tenant's bucket,
// set its time).
type grant struct {
	seq    int64
	at     time.Time
	waited bool
	ahead  int // requests let through before it, answer not reported yet
}

// mark is what an accepted answer said of the tenant's bucket, with what
// the Pacer had let through when its request went: enough to bound the
// tokens the Pacer alone can have spent between two answers.
type mark struct {
	g         grant
	arrived   time.Time
	limit     int
	remaining int
}

// reading is what one answer said of the tenant's bucket.
type reading struct {
	arrived   time.Time
	handled   time.Time // when the tenant handled the request, estimated
	sent      time.Time // when the request was let through; zero if unknown
	remaining float64
}

func newBucket(cfg Config) bucket {
	m := bucket{
		cfg:        cfg,
		share:      cfg.Share,
		est:        newEstimator(),
		mirroring:  true,
		frac:       fracStart,
		policyRate: math.Inf(1),
		policyCap:  1,
		mirrorRate: startRate,
		mirrorCap:  1,
	}
	if m.share == 0 {
		m.share = 1
	}
	m.frac = min(m.frac, m.share)
	if cfg.Rate > 0 {
		m.policyRate, m.policyCap = cfg.Rate, float64(max(cfg.Burst, 1))
		m.allowance = rate.NewLimiter(rate.Limit(cfg.Rate), max(cfg.Burst, 1))
		m.mirrorRate = cfg.Rate
	}
	return m
}

// let records a request let through at now and returns its grant; waited
// says whether the gate held it back first.
func (m *bucket) let(now time.Time, waited bool) grant {
	if m.allowance != nil {
		m.allowance.ReserveN(now, 1)
	}
	m.sent++
	g := grant{seq: m.sent, at: now, waited: waited, ahead: len(m.pending)}
	m.pending = append(m.pending, g)
	return g
}

// learned returns the refill rate learned, the bucket size (0 until seen),
// and whether the rate is known precisely enough to pace by.
func (m *bucket) learned() (float64, int, bool) {
	r, known := m.est.learned()
	return r, m.size, known && m.size > 0
}

// refill returns the tenant's whole refill rate as far as the answers
// show it, the bucket size (0 until seen), and whether the rate is known:
// the largest of the learned rate, the gross rate of the reset times and
// the bound of the last few seconds. Each errs low, never high; unlike
// learned alone, refill does not shrink to what other clients leave.
func (m *bucket) refill() (float64, int, bool) {
	r, size, known := m.learned()
	if g, ok := m.est.gross(); ok {
		r, known = max(r, g), true
	}
	if b := m.est.bound(); b > 0 && known {
		r = max(r, b)
	}
	return r, size, known && size > 0
}

// fullness returns how full the latest answer showed the tenant's bucket,
// from 0 (empty, or not seen yet) to 1.
func (m *bucket) fullness() float64 {
	if len(m.readings) == 0 || m.size <= 0 {
		return 0
	}
	return min(max(m.readings[len(m.readings)-1].remaining/float64(m.size), 0), 1)
}

// settle takes g off the list of pending requests and returns it; a zero g
// stands for the oldest pending request (or, when none is, the last one let
// through, time unknown).
func (m *bucket) settle(now time.Time, g grant) grant {
	i := 0
	if g.seq == 0 {
		if len(m.pending) == 0 {
			return grant{seq: m.sent}
		}
		g = m.pending[0]
	} else {
		var found bool
		if i, found = slices.BinarySearchFunc(m.pending, g.seq, func(q grant, seq int64) int { return int(q.seq - seq) }); !found {
			i = -1
		}
	}
	if i >= 0 {
		m.pending = slices.Delete(m.pending, i, i+1)
	}
	stale := 0
	for stale < len(m.pending) && now.Sub(m.pending[stale].at) > forgetAfter {
		stale++
	}
	m.pending = slices.Delete(m.pending, 0, stale)
	return g
}

// pendingSince returns how many pending requests were let through at or
// after t (all of them when t is zero).
func (m *bucket) pendingSince(t time.Time) int {
	i, _ := slices.BinarySearchFunc(m.pending, t, func(q grant, t time.Time) int { return q.at.Compare(t) })
	return len(m.pending) - i
}

// refuse records that request seq was refused with 429.
func (m *bucket) refuse(seq int64) {
	m.nRefused++
	i, _ := slices.BinarySearch(m.refused, seq)
	m.refused = slices.Insert(m.refused, i, seq)
	if len(m.refused) > refusedKept {
		m.refused = slices.Delete(m.refused, 0, len(m.refused)-refusedKept)
	}
}

// refusedUpTo returns how many requests up to seq were refused with 429.
func (m *bucket) refusedUpTo(seq int64) int64 {
	later := len(m.refused) - sortSearchAfter(m.refused, seq)
	return m.nRefused - int64(later)
}

// sortSearchAfter returns the index of the first element of s above v.
func sortSearchAfter(s []int64, v int64) int {
	i, found := slices.BinarySearch(s, v)
	for found && i < len(s) && s[i] == v {
		i++
	}
	return i
}

// learn takes what answer a to request g said of the tenant's bucket; cur
// is the gate's level at now. It returns the level the gate should have at
// now, or NaN to leave it as it is.
func (m *bucket) learn(now time.Time, g grant, a Answer, cur float64) float64 {
	limited := a.RateLimited
	if !g.at.IsZero() {
		m.latencies = append(m.latencies, now.Sub(g.at))
		if len(m.latencies) > latenciesKept {
			m.latencies = slices.Delete(m.latencies, 0, len(m.latencies)-latenciesKept)
		}
		m.slowest = slices.Max(m.latencies)
	}
	if a.Limit <= 0 {
		if !m.seen && m.cfg.Rate > 0 && m.mirroring {
			// The configured caps alone apply from now on.
			m.mirroring = false
			return m.allowance.TokensAt(now)
		}
		return math.NaN()
	}
	if !m.seen || !m.mirroring {
		m.seen, m.mirroring = true, true
		m.mirrorRate, m.mirrorCap = m.slowRate(), 1
	}
	m.size = a.Limit
	rem := min(max(a.Remaining, 0), a.Limit)
	at := now
	if !g.at.IsZero() {
		at = g.at.Add(now.Sub(g.at) / 2)
	}
	m.est.add(sample{
		at:        at,
		sent:      g.at,
		arrived:   now,
		spent:     float64(g.seq - m.refusedUpTo(g.seq)),
		limit:     a.Limit,
		remaining: rem,
		reset:     a.Reset,
		date:      a.Date,
		refused:   limited,
	})
	m.retune(now)
	m.notice(now, g, a.Limit, rem, limited)

	// The level: the tokens the tenant had when it handled a request
	// answered lately, plus its refill since, less one for each request
	// still pending that it may have handled after that one. Requests
	// let through together, or within the spread of latencies, race each
	// other, so each answer in the span of one latency counts, the lowest
	// wins. A level within one token above that is left as it is: it
	// carries the fraction of a token that remaining rounds away.
	var slowest, fastest time.Duration
	if len(m.latencies) > 0 {
		slowest, fastest = slices.Max(m.latencies), slices.Min(m.latencies)
	}
	if !limited {
		m.probe(g, rem, slowest)
		m.adjust(now, g, rem, slowest)
	}
	m.readings = append(m.readings, reading{arrived: now, handled: at, sent: g.at, remaining: float64(rem)})
	// The readings kept are those the tenant handled within a round trip
	// of the latest it handled: an answer that comes back late tells of
	// the bucket before one that came back sooner, and must not take
	// its place.
	latest := at
	for _, rd := range m.readings {
		latest = later(latest, rd.handled)
	}
	m.readings = slices.DeleteFunc(m.readings, func(rd reading) bool { return latest.Sub(rd.handled) > slowest })
	low, claimed := m.readLevel(now, slowest, fastest)
	claim := m.share * m.claim()
	if !m.sharing() {
		low += m.slack
	}
	if !limited {
		// The cushion, in tokens of the claim.
		low -= claim * m.margin
		decay := marginDecay
		if m.sharing() {
			decay = marginDecayShared
		}
		m.margin = max(0, m.margin-decay)
	}
	if m.hidden {
		// The announced bucket's tokens are not the limit: the gate
		// paces on its own.
		return math.NaN()
	}
	// The gate is raised no further than the policy caps allow.
	switch {
	case cur < low:
		if m.allowance != nil {
			low = max(cur, min(low, m.allowance.TokensAt(now)))
		}
		if claimed && low >= cur+1 {
			low = m.claimed(now, low, slowest)
		}
		return low
	case cur > low+1:
		return low + 0.5
	}
	return math.NaN()
}

// readLevel returns the level the readings show at now: for each, the
// tokens claimed of those it showed left (frac of them above the reserve,
// see claim and reserve), plus the tenant's refill since, less the
// requests still pending that it may have handled after; and whether the
// lowest of them, which it returns, made a claim of a token or more. A
// stale reading, one the tenant handled before claimFrom or of a request
// let through before claimSent, claims at most one token (see the package
// doc: claims a round trip apart). Alone, a fresh reading stands for the
// bucket in place of the stale ones; while others share it, the lowest of
// all does.
func (m *bucket) readLevel(now time.Time, slowest, fastest time.Duration) (float64, bool) {
	claim := m.share * m.claim()
	reserve := m.reserve()
	low, stale, claimed := math.Inf(1), math.Inf(1), false
	for _, rd := range m.readings {
		since := rd.sent
		if !since.IsZero() {
			since = since.Add(-(slowest - fastest) / 2)
		}
		c := claim * max(0, rd.remaining-reserve)
		fresh := !rd.handled.Before(m.claimFrom) && (m.claimSent.IsZero() || !rd.sent.Before(m.claimSent))
		if fresh {
			m.claimSeen = m.claimSeen || !m.claimFrom.IsZero()
		} else {
			c = min(c, 1)
		}
		l := c + m.mirrorRate*now.Sub(rd.handled).Seconds() - float64(m.pendingSince(since))
		switch {
		case !fresh:
			stale = min(stale, l)
		case l < low:
			low, claimed = l, c >= 1
		}
	}
	if math.IsInf(low, 1) || m.sharing() {
		low = min(low, stale)
		claimed = claimed && low < stale
	}
	return low, claimed
}

// claimed notes that the gate is raised at now to low by a claim, and
// returns the level to raise it to. Unless the claim is of the whole
// bucket, answers the tenant handles before the others' requests of the
// same round trip can show claim no more (see readLevel): while others
// share the bucket, those it handles within a round trip; before the
// first fresh answer after the first claim, those to requests let
// through before the probe, which the gate lets through probeAfter from
// now.
func (m *bucket) claimed(now time.Time, low float64, slowest time.Duration) float64 {
	switch {
	case m.share*m.claim() >= 1:
	case m.sharing():
		m.claimFrom, m.claimSent = now.Add(slowest), time.Time{}
	case !m.claimSeen:
		m.claimFrom, m.claimSent = now, now.Add(probeAfter)
		return math.Floor(low) + max(0, 1-probeAfter.Seconds()*m.mirrorRate)
	}
	return low
}

// adjust is the control law on frac (see the package doc), for an
// accepted request g whose answer showed remaining tokens: frac grows with
// time, and is cut, at most once per cutGap, when the tenant's bucket shows
// empty to a request the gate held back or, while others draw on it, shows
// no more than the common reserve to any request.
func (m *bucket) adjust(now time.Time, g grant, remaining int, slowest time.Duration) {
	if !m.fracAt.IsZero() && now.After(m.fracAt) && m.grows() {
		dt := now.Sub(m.fracAt).Seconds()
		m.frac = min(m.share, m.frac+fracIncrease*dt)
	}
	m.fracAt = now
	if float64(remaining) <= m.reserve() && (g.waited || m.sharing()) {
		m.cut(now, m.cutFactor(), slowest)
	}
}

// grows reports whether frac grows with time: alone, or once the pace
// is frac of a refill the answers show. While others draw on the bucket
// and the refill is not known yet, the pace is the slow starting one
// whatever frac is, so nothing would show a frac grown too large until
// the refill is learned, and every Pacer then at once paces at it.
func (m *bucket) grows() bool {
	if !m.sharing() || m.est.net().known {
		return true
	}
	_, ok := m.est.gross()
	return ok
}

// cutFactor is what a cut of frac multiplies it by: deeper while others
// draw on the bucket, so that the overshoot of every Pacer's claim drains
// before it empties the bucket.
func (m *bucket) cutFactor() float64 {
	if m.sharing() {
		return fracCutShared
	}
	return fracCut
}

// notice takes note, at now, of whether the answers show other clients
// drawing on the tenant's bucket (see estimator.others and spent), and
// forgets it sharingKept after they last did. g is the request answered,
// showing remaining tokens of a bucket of limit; limited says it was
// refused.
func (m *bucket) notice(now time.Time, g grant, limit, remaining int, limited bool) {
	if m.est.others() || (!limited && m.spent(now, g, limit, remaining)) {
		m.sharedAt = now
	}
	if !m.sharedAt.IsZero() && now.Sub(m.sharedAt) > sharingKept {
		m.sharedAt = time.Time{}
	}
}

// spent reports whether an accepted answer, arrived at now to request g,
// shows more tokens gone from the tenant's bucket than this Pacer can have
// taken since an earlier answer: others drew on it too. The tenant's
// refill only adds tokens, so between an answer that came back before g
// was let through (mark j) and g's own, the bucket can lose at most the
// requests let through since j's request and those still pending when it
// went, whatever the refill. Unlike the reset times, this shows another
// client within a round trip of its first requests, before a burst spent
// by every client at once empties the bucket. The last marksKept answers
// are kept to compare with.
func (m *bucket) spent(now time.Time, g grant, limit, remaining int) bool {
	if g.at.IsZero() {
		return false
	}
	seen := false
	for _, j := range m.marks {
		if j.limit != limit || j.arrived.After(g.at) {
			continue
		}
		own := m.sent - j.g.seq + int64(j.g.ahead)
		if int64(remaining) < int64(j.remaining)-own-othersSlack {
			seen = true
			break
		}
	}
	m.marks = append(m.marks, mark{g: g, arrived: now, limit: limit, remaining: remaining})
	if len(m.marks) > marksKept {
		m.marks = slices.Delete(m.marks, 0, len(m.marks)-marksKept)
	}
	return seen
}

// sharing reports whether others draw on the tenant's bucket lately.
func (m *bucket) sharing() bool {
	return !m.sharedAt.IsZero()
}

// reserve returns how many of the tokens the answers show the Pacer leaves
// to the common reserve: reserveTokens (at most a quarter of the bucket)
// while others draw on the bucket, none when alone.
func (m *bucket) reserve() float64 {
	if !m.sharing() {
		return 0
	}
	return min(reserveTokens, float64(m.size)/4)
}

// accept counts an accepted request answered at now, and lets the pace
// under a hidden limit grow (see hiddenProbe).
func (m *bucket) accept(now time.Time) {
	dt := 0.0
	if !m.accAt.IsZero() {
		dt = max(0, now.Sub(m.accAt).Seconds())
	}
	m.acc = m.acc*math.Exp(-dt/accWindow.Seconds()) + 1
	m.accAt = now
	if m.hidden && dt > 0 {
		g := hiddenProbe
		if m.hiddenRate < 0.95*m.hiddenPeak {
			g = hiddenRecover
		}
		m.hiddenRate *= 1 + g*dt
		m.retune(now)
	}
}

// accepted returns the rate of accepted requests lately.
func (m *bucket) accepted(now time.Time) float64 {
	if m.accAt.IsZero() {
		return 0
	}
	return m.acc * math.Exp(-max(0, now.Sub(m.accAt).Seconds())/accWindow.Seconds()) / accWindow.Seconds()
}

// claim returns the part of the tenant's refill and tokens this Pacer
// claims, relative to its share: frac, but all of a bucket too small to
// share (fewer than minClaim tokens at frac).
func (m *bucket) claim() float64 {
	c := m.frac / m.share
	if m.size > 0 && fracStart*m.share*float64(m.size) < minClaim {
		c = 1
	}
	r, ok := m.est.learned()
	if !ok {
		r = m.est.bound()
	}
	if r*m.slowest.Seconds() >= float64(m.size) {
		// A bucket that refills within a round trip cannot be shared
		// by claims on what it shows.
		c = 1
	}
	return min(c, 1)
}

// cut multiplies frac by f, unless it was cut within the last cutGap.
func (m *bucket) cut(now time.Time, f float64, slowest time.Duration) {
	if !m.cutAt.IsZero() && now.Sub(m.cutAt) < cutGap(slowest) {
		return
	}
	m.cutAt = now
	m.frac = max(fracMin, m.frac*f)
	m.retune(now)
}

// cutGap is the least time between two cuts of frac: two round trips, so
// that a cut shows in the answers before the next, and at least
// minCutGap.
func cutGap(slowest time.Duration) time.Duration {
	return max(2*slowest, minCutGap)
}

// probe looks for tokens the level leaves unused in the tenant's bucket.
// The level takes each answer's remaining as read midway through the round
// trip; a tenant that counts requests as they arrive (or just before it
// answers) had more (or fewer) tokens than that by the refill of half a
// round trip, and requests racing each other are counted against the
// level twice. Once the rate is known, the answers to requests the gate
// held back show what that costs: each such request came as soon as the
// Pacer thought the tenant had a token, so remaining should read 0, or 1
// with the one token the Pacer keeps so that a drift of the learned rate
// shows. When every answer over a span of probeAnswers answers and
// probeSpan seconds of pace reads at least m >= 2, the tenant had m-1
// tokens to spare all along, and the level is raised by m-1 from then on,
// up to one round trip's refill. A 429 halves the raise (see hold).
func (m *bucket) probe(g grant, remaining int, slowest time.Duration) {
	if !g.waited || g.seq <= m.probeFrom || !m.est.net().known || m.sharing() {
		return
	}
	if m.probeN == 0 || remaining < m.probeMin {
		m.probeMin = remaining
	}
	m.probeN++
	if float64(m.probeN) < max(probeAnswers, probeSpan*m.mirrorRate) {
		return
	}
	if m.probeMin > 1 {
		m.slack = min(m.slack+float64(m.probeMin-1), max(m.slack, m.mirrorRate*slowest.Seconds()))
	}
	m.probeFrom, m.probeN = m.sent, 0
}

// slowRate is the pace before the tenant's rate is known.
func (m *bucket) slowRate() float64 {
	if m.cfg.Rate > 0 {
		return min(m.cfg.Rate, startRate)
	}
	return startRate
}

// retune sets the caps from what was learned; reset applies them to the
// gate.
func (m *bucket) retune(now time.Time) {
	net := m.est.net()
	r := m.slowRate()
	switch {
	case net.known:
		// The tenant's whole refill: frac claims a share of it.
		r, _ = m.est.learned()
		if g, ok := m.est.gross(); ok && r == g {
			r = m.unbias(g)
		}
		// Kept near empty, the tenant's bucket reads remaining 0 whatever
		// fraction of a token it holds, so the fit only confirms the pace
		// it is given: a pace a little above the refill would drain that
		// fraction unseen until a 429. The reset times show the refill
		// whatever the pace, erring low; a pace below the refill shows as
		// remaining 1 and the gate's level makes up the tokens (see
		// learn). The reset times are whole seconds, so they are trusted
		// only for a bucket that takes long enough to refill.
		g, ok := m.est.gross()
		if ok && g < r && float64(m.size) >= grossCapRefill*r {
			r = m.unbias(g)
		}
		r *= m.share * m.claim()
	case net.settled && net.rate-2*net.se > r:
		// Not precise yet, but surely faster than the slow pace.
		r = net.rate - 2*net.se
	}
	if !net.known {
		// A bucket that fills up between answers hides its rate from
		// the fit, but not how fast it at least refills; and when other
		// clients keep the fit from showing the refill, the reset times
		// still show it.
		b := m.est.bound() * m.share
		if m.sharing() {
			b *= m.claim()
		}
		r = max(r, b)
		if g, ok := m.est.gross(); ok {
			r = max(r, m.share*m.claim()*g)
		}
	}
	if m.hidden {
		r = m.hiddenRate
	}
	r = max(r, minRate)
	size := max(1, m.share*float64(m.size))
	if m.hidden {
		size = 1
	}
	if m.cfg.Burst > 0 {
		size = min(size, float64(m.cfg.Burst))
	}
	m.mirrorCap, m.mirrorRate = size, r

	most := math.Inf(1)
	if m.cfg.Rate > 0 {
		most = m.cfg.Rate
	}
	// Until the rate is known, a share is kept by the tokens left in the
	// tenant's bucket alone: the refill can only be measured while the
	// bucket is not full, so the Pacer has to draw on it for a while.
	if learned, ok := m.est.learned(); ok && m.share < 1 {
		if g, ok := m.est.gross(); ok && learned == g {
			learned = m.unbias(g)
		}
		most = min(most, max(m.share*learned, minRate))
	}
	if math.IsInf(most, 1) {
		return
	}
	m.policyCap, m.policyRate = size, most
	if m.allowance == nil {
		m.allowance = rate.NewLimiter(rate.Limit(most), max(1, int(size)))
		return
	}
	m.allowance.SetBurstAt(now, max(1, int(size)))
	m.allowance.SetLimitAt(now, rate.Limit(most))
}

// unbias returns the refill rate to take for g, the one the reset times
// show: g itself, or with a share below 1 the centred estimate (see
// estimator.centred) when larger, so that the part of the refill g misses
// is not left unclaimed by every Pacer holding a share.
func (m *bucket) unbias(g float64) float64 {
	if m.share < 1 {
		if c, ok := m.est.centred(); ok && c > g {
			return c
		}
	}
	return g
}

// pace returns the gate's rate and burst: the smaller of the policy and
// the mirror caps.
func (m *bucket) pace() (rate.Limit, int) {
	r, b := m.policyRate, math.Inf(1)
	if !math.IsInf(r, 1) {
		b = m.policyCap
	}
	if m.mirroring {
		r, b = min(r, m.mirrorRate), min(b, m.mirrorCap)
	}
	if math.IsInf(b, 1) {
		b = 1
	}
	return rate.Limit(r), max(1, int(b))
}

// limit returns the pace in requests per second: the policy rate, or the
// mirror's when that is lower and known (see Pacer.Limit).
func (m *bucket) limit() float64 {
	r := m.policyRate
	// Below a configured rate, a rate not learned yet only paces between
	// answers; the answers show what the tenant can take.
	if m.mirroring && (math.IsInf(r, 1) || m.est.net().known) {
		r = min(r, m.mirrorRate)
	}
	return r
}

// rebuff is what a refusal for the rate limit does to the model once the
// tenant's bucket has been seen: the slack found by probe is halved and
// looked for again, one more token is left in the bucket as a cushion (up
// to a quarter of it), and the pace slows by a fifth (down to a quarter);
// both wear off as accepted requests pass (see learn).
func (m *bucket) rebuff(now time.Time, unexplained bool) {
	if !m.seen {
		return
	}
	m.slack = math.Floor(m.slack / 2)
	m.probeFrom, m.probeN = m.sent, 0
	m.margin = min(m.margin+marginStep, float64(m.size)/4)
	slowest := time.Duration(0)
	if len(m.latencies) > 0 {
		slowest = slices.Max(m.latencies)
	}
	switch acc := m.accepted(now); {
	case !unexplained:
		m.cut(now, m.cutFactor(), slowest)
	case !m.hidden:
		m.hidden = true
		// How fast the hidden limit lets requests through is not known
		// yet: half the pace, then quickly back to near it.
		m.hiddenPeak = max(acc, m.mirrorRate, minRate)
		m.hiddenRate = m.hiddenPeak / 2
		m.cutAt = now
	case now.Sub(m.cutAt) >= cutGap(slowest):
		m.hiddenPeak = max(min(acc, m.hiddenRate), minRate)
		m.hiddenRate = max(hiddenCut*m.hiddenPeak, minRate)
		m.cutAt = now
	}
	m.retune(now)
}

// tokenTime returns how long the tenant takes to refill one token, and
// whether its rate is known well enough to tell.
func (m *bucket) tokenTime() (time.Duration, bool) {
	if m.hidden {
		// The pace after the cut is the best guess at the hidden limit.
		return time.Duration(float64(time.Second) / max(m.hiddenRate, minRate)), true
	}
	if net := m.est.net(); m.seen && net.known {
		return time.Duration(float64(time.Second) / max(net.rate, minRate)), true
	}
	return 0, false
}
