// Package ratelimit paces every request linkbatch sends to the tenant and
// decides when a failed request is sent again.
//
// One [Pacer] is shared by all workers, for reads and writes alike. Unless
// told a rate, it learns the tenant's rate limit from what the answers say
// of its bucket (an [Answer]: size, tokens left, reset time): it starts at
// the smallest plan's level, spends the tenant's burst at once as soon as
// the bucket size is known, then sends at the refill rate it measures,
// keeping its shared golang.org/x/time/rate limiter no fuller than the
// tenant's bucket. An answer refusing a request for the rate limit holds
// every worker back until the tenant can take the next request. [Pacer.Do]
// runs one call with its retries; [Backoff] is the pause between retries of
// transient failures.
//
// # Sharing the tenant's bucket
//
// Every client of a tenant draws on one bucket, and every answer shows all
// of them the same remaining count. A Pacer claims a share f of it: f of
// the tokens the answers show left above a reserve R (its gate's level)
// and f of the tenant's refill rate ρ (its pace), where ρ is the refill
// the reset times show, or the fitted one when larger. f follows additive
// increase, multiplicative decrease on that common signal:
//
//	df/dt = a                 (a = fracIncrease per second)
//	f ← β·f                   when an answer shows at most R tokens left,
//	                          or on a 429 (at most once per two round
//	                          trips; β = fracCut alone, fracCutShared
//	                          while others draw on the bucket)
//
// bounded by fracMin below and Config.Share above. R is the common
// reserve: none while the Pacer is alone, and reserveTokens (at most a
// quarter of the bucket) while the answers show others drawing on it too,
// lately (sharingKept): the reset times show the bucket refilling clearly
// faster than the fitted rate left to this Pacer (see estimator.others),
// or an answer shows more tokens gone since an earlier one than all the
// Pacer's requests in between can have taken (see bucket.spent; the
// refill only adds, so this needs no rate and shows another client a
// round trip after its first requests).
// Alone, only answers to requests the gate held back count, so that a
// burst spent at once is no signal. f starts at fracStart, so that Pacers
// started together do not all spend the whole bucket at once; a bucket too
// small to share (fewer than minClaim tokens at the starting share, or
// refilled within a round trip) is claimed whole. A refusal also leaves a
// cushion of tokens (see bucket.rebuff) out of the Pacer's claim, worn off
// by each accepted request; while others share the bucket it wears off
// eight times faster. And while others share it the Pacer neither looks
// for tokens its answers leave unused nor adds those it found (see
// bucket.probe): the reserve would read as such tokens, and each answer
// would then let the Pacer take more, the more answers the more, a
// feedback that let whichever Pacer sent most run away with the bucket.
//
// Claims are made a round trip apart, unless the Pacer claims the whole
// bucket (one too small to share, without Config.Share). The tokens an answer shows left were left before every
// request the other clients sent meanwhile, and each of them, seeing the
// same answers, claims its part of the same tokens. So while others share
// the bucket, an answer the tenant handled within a round trip of the
// last claim claims at most one token, and the lowest answer stands for
// the bucket. The first claim, before the Pacer can know whether others
// are there, is followed probeAfter later by one more request, the probe:
// answers to requests let through before it claim at most one token, and
// the probe's answer, which shows the requests others sent meanwhile,
// claims again (alone, it stands for the bucket in place of the stale
// answers, which would otherwise hold a lone Pacer's bucket full for
// another round trip). Without that, Pacers started together each
// claimed f of the full bucket, then, on answers to those very requests,
// f of what seemed left of it again, and together spent twice the
// bucket: the 429s of a shared start. And while others share
// the bucket and its refill is not known yet, f does not grow: the pace is
// then the slow starting one (or f of the least refill the answers show,
// see estimator.bound), whatever f is, so a grown f would show only once
// the refill is learned, when every Pacer at once paced at it.
//
// Why it converges: while the claims add up to less than the bucket
// (Σf < 1) tokens go unclaimed, the bucket stays above the reserve, and
// every Pacer's f grows by the same a·dt, which leaves the differences
// between them as they are. Once Σf > 1 the claims take the bucket down to
// the reserve, every Pacer sees the same low answers within a round trip
// (each of its answers counts, held back or not), and each f is cut by the
// same factor β, which shrinks every difference f_i − f_j by β. So the
// differences decay geometrically with the number of cuts, while Σf
// cycles around 1 (Chiu and Jain's argument for AIMD): the Pacers converge
// to equal shares that add up to the whole bucket. The bucket itself is
// the buffer: as long as it neither fills up nor runs dry, the tenant's
// refill is spent whatever the cycle of Σf, so the makespan stays at the
// floor. The reserve is what keeps it from running dry: the Pacers' claims
// overshoot for up to a round trip before the low answers come back, and R
// tokens absorb that overshoot where an empty bucket would answer 429. All
// Pacers agree on R, so it favours none of them; a cushion that each kept
// for its own refusals did, which is why it wears off faster when shared.
// The argument holds only as far as each Pacer's pace follows its f: the
// level read from each answer still lets one Pacer take a token another
// was about to, so shares wander around the equal one. And it is about
// rates, not rows done: a Pacer started before the others keeps what it
// spent of the full bucket alone (a quarter, then a part of what is left
// each round trip) as a lead to the end. A Pacer left alone grows f by a
// per second, back to the whole bucket within a few seconds (from a
// quarter, in under 4 s), and drops the reserve sharingKept after the
// answers last showed others.
//
// A 429 the announced bucket cannot explain (its headers still show tokens,
// or show another bucket than the accepted answers) comes from a limit the
// headers do not announce. The Pacer then stops claiming the announced
// bucket's tokens (burst 1) and paces at a rate h of its own, with the
// rate of accepted answers (a moving count over accWindow) as the measure:
// at the first such 429, h is half the pace; at each later one (at most
// once per two round trips), the peak p becomes the rate accepted then
// (no more than h) and h is cut to hiddenCut·p; h grows back by
// hiddenRecover of itself per second up to 0.95·p, and above it by only
// hiddenProbe per second. Accepted answers come at most at the hidden
// limit's rate, so p settles on it and h cycles just around it, slowly
// enough that the hidden bucket's own burst absorbs each overshoot. A 429
// from another bucket that says it is full again by now (a reset not in
// the future) is no limit at all: the refused call alone pauses, briefly,
// and nothing is learned from it.
//
// Config.Share F caps f: F of the tenant's whole refill and bucket, not of
// what other clients leave. Where the reset times set the refill it is F
// of, they are read with each token taken mid-exchange (see
// estimator.centred): that errs low by half a round trip over the time to
// reset, where the estimate a lone Pacer trusts errs by a whole one, and
// every Pacer holding a share leaves that part unclaimed.
//
// The package owns pacing and retrying, and nothing else. It knows no HTTP
// and no Auth0 client: the caller turns each response into an [Answer] and
// supplies the policy that says which errors are worth another attempt
// (linkbatch uses linker.Retryable).
//
// The files follow its ideas: pacer.go the [Pacer] and its settings,
// gate.go the first-come-first-served gate every request waits at,
// model.go the model of the tenant's bucket, estimate.go the estimate of
// its refill rate, hold.go the hold-off after a refusal, and retry.go the
// retry loop.
package ratelimit
