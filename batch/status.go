package batch

import "slices"

// Status is a row's outcome, as written in the results file's status
// column.
type Status string

// Row outcomes. Statuses lists them in order.
const (
	StatusLinked        Status = "linked"         // the API linked the pair (201)
	StatusAlreadyLinked Status = "already_linked" // the secondary was already among the primary's identities
	StatusPlanned       Status = "planned"        // dry run: valid, would be sent
	StatusInvalid       Status = "invalid"        // the row is malformed or clashes with another row; nothing sent
	StatusSkipped       Status = "skipped"        // an exact duplicate of an earlier row; nothing sent
	StatusFailed        Status = "failed"         // the API refused the link, or retries ran out

	// Rollback outcomes.
	StatusUnlinked        Status = "unlinked"         // the secondary was unlinked and both users' metadata restored
	StatusAlreadyUnlinked Status = "already_unlinked" // the primary no longer held the secondary; metadata restored
)

// Statuses is every Status, in the order in which logs, the progress
// summary, metrics and the report list them. It must not be modified.
var Statuses = []Status{
	StatusLinked, StatusAlreadyLinked, StatusPlanned,
	StatusInvalid, StatusSkipped, StatusFailed,
	StatusUnlinked, StatusAlreadyUnlinked,
}

// String returns the status as written in the results file.
func (s Status) String() string { return string(s) }

// Known reports whether s is one of Statuses.
func (s Status) Known() bool { return slices.Contains(Statuses, s) }
