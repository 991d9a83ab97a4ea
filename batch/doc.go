// Package batch owns the pool that links the rows of one input: the rows
// themselves (Row, checked once into a link request), the sources they
// come from (Source; the CSV file is one, through Reader), the pre-pass
// over a CSV file that refuses duplicates and conflicts (Plan), the
// per-row decision (read the users, back them up, merge their metadata,
// link, verify an ambiguous answer), the results (Result, Status, the Sink
// they are written to, resume), the backup (BackupWriter, BackupIndex; it
// also records the secondary's roles and organizations, see grants.go) and
// the rollback of a run from it (Rollback, a RowAction over a
// RollbackSource).
//
// batch must not know HTTP status codes (linker classifies answers),
// command-line flags or environment variables (cmd/linkbatch parses them
// into a Config), or the terminal (progress and metrics follow a run
// through Hooks). The HTML report of a results file is internal/report.
package batch
