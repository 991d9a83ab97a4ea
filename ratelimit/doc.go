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
