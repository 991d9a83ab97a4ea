package batch

import (
	"errors"
	"fmt"
	"sync"
)

// ErrCredentials is wrapped by the error Run returns when the tenant refused
// the credentials (401 or 403), which would fail every row alike.
var ErrCredentials = errors.New("the tenant refused the credentials")

// ErrEveryRowFails is matched by the *FailingAlikeError that Run returns
// when consecutive rows failed alike for a reason no row can escape.
var ErrEveryRowFails = errors.New("every row fails alike")

// abortStreak is how many rows in a row must fail alike, for a reason that
// comes from the tenant's address or the token rather than from the row
// (linker.FatalForAll), before Run stops starting rows: enough that one
// passing fault does not stop a run, few enough that a mistake costs
// seconds, not days.
const abortStreak = 5

// FailingAlikeError is the error of a run that stopped because abortStreak
// rows in a row failed alike, for a reason no row can escape.
type FailingAlikeError struct {
	Kind string // linker.FatalDNS, FatalRefused, FatalTLS or FatalTokenFormat
	Rows int    // rows in a row that failed so
	Last string // the last of their errors
}

func (e *FailingAlikeError) Error() string {
	return fmt.Sprintf("%s: %d rows in a row failed alike (%s): %s", ErrEveryRowFails, e.Rows, e.Kind, e.Last)
}

// Is reports whether target is ErrEveryRowFails.
func (e *FailingAlikeError) Is(target error) bool { return target == ErrEveryRowFails }

// failStreak counts the rows that last ended failing alike. It is safe for
// concurrent use.
type failStreak struct {
	mu   sync.Mutex
	kind string
	n    int
}

// add counts a row's result and returns the error that stops the run once
// abortStreak rows in a row failed alike; any other result starts over.
func (s *failStreak) add(res Result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if res.fatal == "" {
		s.kind, s.n = "", 0
		return nil
	}
	if res.fatal != s.kind {
		s.kind, s.n = res.fatal, 0
	}
	if s.n++; s.n < abortStreak {
		return nil
	}
	return &FailingAlikeError{Kind: s.kind, Rows: s.n, Last: res.Error}
}
