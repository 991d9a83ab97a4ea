package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/export"
	"github.com/linkbatch/linkbatch/internal/pairing"
)

const planUsage = `Usage: linkbatch plan --from-export FILE --out FILE [flags]

Reads an Auth0 user export (the bulk export job's file: newline-delimited
JSON or CSV, gzipped or not), groups the users by email (trimmed, lower-cased,
verified emails only), chooses a primary in each group, and writes the pairs
as a CSV file that 'linkbatch run --in' reads as is. Groups that need a
person (too large, mixed verified and unverified emails, no clear primary)
are reported and not paired. The export is read twice, so it must be a file.

Primary policies (--primary):
  oldest           the user created first (created_at); ties: smallest user_id
  most-logins      the user with the most logins (logins_count); ties: smallest user_id
  connection=NAME  the one user on connection NAME; none or several: needs a person
A user that already holds linked identities stays the primary of its group
whatever the policy (with connection=NAME, it must be the user on NAME).

Examples:
  linkbatch plan --from-export users.json.gz --out pairs.csv --report plan.html
  linkbatch plan --from-export users.json.gz --out pairs.csv --primary most-logins --force
  linkbatch plan --from-export users.csv --out pairs.csv --primary connection=Username-Password-Authentication
  linkbatch run --dry-run --verify --in pairs.csv --out audit.csv
`

// planConfig is every setting of one 'linkbatch plan'.
type planConfig struct {
	From, Out, Report string
	// Force replaces an existing --out or --report.
	Force   bool
	Pairing pairing.Config
}

// parsePlanFlags parses the arguments of 'linkbatch plan'.
func parsePlanFlags(args []string, stderr io.Writer) (*planConfig, error) {
	cfg := &planConfig{Pairing: pairing.DefaultConfig()}
	fs := flag.NewFlagSet("linkbatch plan", flag.ContinueOnError)
	help := func() {
		fmt.Fprint(stderr, planUsage)
		fmt.Fprintln(stderr, "\nFlags:")
		printFlags(stderr, fs)
		fmt.Fprintf(stderr, "\nExit codes: 0 plan written; 1 plan written, but some export lines could not be read; 2 usage error; 3 aborted.\n")
	}
	fs.StringVar(&cfg.From, "from-export", "", "Auth0 user export `file` (.json, .json.gz, .csv or .csv.gz)")
	fs.StringVar(&cfg.Out, "out", "", "pairs CSV `file` to write (primary_user_id,secondary_user_id)")
	fs.StringVar(&cfg.Report, "report", "", "also write an HTML plan report (groups, sizes, primaries, why) to `file`")
	policy := fs.String("primary", cfg.Pairing.Policy.String(), "primary `policy`: oldest, most-logins or connection=NAME")
	fs.BoolVar(&cfg.Force, "force", false, "replace --out and --report if they exist")
	fs.IntVar(&cfg.Pairing.MaxGroup, "max-group", cfg.Pairing.MaxGroup, "groups with more users than this need a person and are not paired")
	if err := parseFlags(fs, args, help); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{&commandError{cmd: "plan", err: err}}
	}
	if fs.NArg() > 0 {
		return nil, planUsagef("unexpected argument %q", fs.Arg(0))
	}
	p, err := pairing.ParsePolicy(*policy)
	if err != nil {
		return nil, planUsagef("--primary: %v", err)
	}
	cfg.Pairing.Policy = p
	return cfg, cfg.Validate()
}

func planUsagef(format string, args ...any) error {
	return &usageError{&commandError{cmd: "plan", err: fmt.Errorf(format, args...)}}
}

// Validate checks the configuration and returns a *usageError naming the
// first problem.
func (c *planConfig) Validate() error {
	switch {
	case c.From == "":
		return planUsagef("--from-export is required (the user export file)")
	case c.From == "-":
		return planUsagef("--from-export must name a file: the export is read twice")
	case c.Out == "" || c.Out == "-":
		return planUsagef("--out is required (the pairs CSV file to write)")
	case samePath(c.From, c.Out):
		return planUsagef("--from-export and --out name the same file")
	case c.Report != "" && (samePath(c.Report, c.Out) || samePath(c.Report, c.From)):
		return planUsagef("--report needs a file of its own")
	}
	if err := c.Pairing.Validate(); err != nil {
		return planUsagef("%v", err)
	}
	for _, f := range []struct{ flag, path string }{{"--out", c.Out}, {"--report", c.Report}} {
		if f.path == "" || c.Force {
			continue
		}
		if st, err := os.Stat(f.path); err == nil && st.Size() > 0 {
			return planUsagef("%s %s already exists and is not empty; add --force to replace it, or choose another file", f.flag, f.path)
		}
	}
	return nil
}

// samePath reports whether a and b name the same file: the same path, or
// two names (links) of one existing file.
func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// planProblems ends a plan that was written although some lines of the
// export could not be read; it exits 1.
type planProblems struct{ lines int }

func (e *planProblems) Error() string {
	return fmt.Sprintf("%d lines of the export could not be read and are not in the plan (see above)", e.lines)
}
func (e *planProblems) Is(target error) bool { return target == errProblems }

// maxShownLineErrors is how many unreadable export lines are printed.
const maxShownLineErrors = 20

func planCommand(ctx context.Context, args []string, stdout, stderr io.Writer, signals <-chan os.Signal) error {
	cfg, err := parsePlanFlags(args, stderr)
	if err != nil {
		return err
	}
	// A signal stops the plan; the files being written are removed.
	ctx, stop := context.WithCancel(ctx)
	var watcher sync.WaitGroup
	defer watcher.Wait()
	defer stop()
	watcher.Go(func() {
		select {
		case <-signals:
			stop()
		case <-ctx.Done():
		}
	})
	start := time.Now()
	planner := pairing.NewPlanner(withIDCheck(cfg.Pairing))

	// First pass: a few facts per email.
	var badLines int
	first, err := readExport(ctx, cfg.From, func(u export.User) {
		planner.Add(toPairingUser(u))
	}, func(le *export.LineError) {
		badLines++
		if badLines <= maxShownLineErrors {
			fmt.Fprintf(stderr, "linkbatch: export %v\n", le)
		}
	})
	if err != nil {
		return err
	}
	if badLines > maxShownLineErrors {
		fmt.Fprintf(stderr, "linkbatch: ... and %d more unreadable lines\n", badLines-maxShownLineErrors)
	}
	planner.Decide()

	// Second pass: the pairs.
	out, err := newAtomicFile(cfg.Out)
	if err != nil {
		return err
	}
	defer out.Abort()
	w := csv.NewWriter(out)
	_ = w.Write([]string{"primary_user_id", "secondary_user_id"})
	rep := newPlanReport(cfg, planner.Counts())
	second, err := readExport(ctx, cfg.From, func(u export.User) {
		pu := toPairingUser(u)
		pl := planner.Place(pu)
		if pl.Action == pairing.Link {
			if err := (batch.Row{Primary: pl.Primary, Secondary: pu.ID}).Validate(); err != nil {
				rep.refuse(pu, pl, err)
				return
			}
			_ = w.Write([]string{pl.Primary, pu.ID})
		}
		rep.add(pu, pl)
	}, func(*export.LineError) {})
	if err != nil {
		return err
	}
	if second != first {
		return fmt.Errorf("the export changed while it was read: %d users, then %d", first, second)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("write %s: %w", cfg.Out, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("plan interrupted; nothing written: %w", err)
	}
	rep.Users, rep.BadLines, rep.Elapsed = first, badLines, time.Since(start).Round(time.Millisecond)
	// Both files are complete before either is renamed into place.
	if cfg.Report != "" {
		rf, err := writePlanReport(cfg.Report, rep)
		if err != nil {
			return err
		}
		defer rf.Abort()
		if err := out.Commit(); err != nil {
			return err
		}
		if err := rf.Commit(); err != nil {
			return err
		}
	} else if err := out.Commit(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "linkbatch plan: %d users, %d emails: %d pairs in %d groups written to %s; %d groups need a person (%d users), %d users with unverified emails set apart, %d already linked, %d without email\n",
		first, rep.Counts.Emails, rep.Pairs, rep.Counts.Paired, cfg.Out, rep.Counts.NeedsHuman, rep.SetAsideUsers,
		rep.UnverifiedUsers, rep.AlreadyLinked, rep.Counts.NoEmail)
	if rep.Refused > 0 {
		fmt.Fprintf(stderr, "linkbatch: %d pairs were left out because linkbatch run would refuse them (see the report)\n", rep.Refused)
	}
	if badLines > 0 {
		return &planProblems{lines: badLines}
	}
	return nil
}

// withIDCheck makes the planner set aside groups holding a user id that
// 'linkbatch run' would refuse, as a primary or as a secondary.
func withIDCheck(c pairing.Config) pairing.Config {
	c.CheckID = func(id string) error {
		const other = "auth0|linkbatch-plan-check"
		if err := (batch.Row{Primary: id, Secondary: other}).Validate(); err != nil {
			return err
		}
		if err := (batch.Row{Primary: other, Secondary: id}).Validate(); err != nil {
			return err
		}
		return nil
	}
	return c
}

func toPairingUser(u export.User) pairing.User {
	pu := pairing.User{
		ID: u.UserID, Email: u.Email, EmailVerified: u.EmailVerified,
		CreatedAt: u.CreatedAt, Logins: u.LoginsCount, Connection: u.Connection(),
	}
	// One identity is the common case: its full id is then the user's.
	if len(u.Identities) > 1 || (len(u.Identities) == 1 && !u.Identities[0].Is(u.UserID)) {
		pu.Identities = make([]string, len(u.Identities))
		for i, id := range u.Identities {
			pu.Identities[i] = id.FullID()
		}
	}
	return pu
}

// readExport reads the export at path, calling user for each user and bad
// for each unreadable line; it returns the number of users read. The lines
// of an NDJSON export are parsed on every core.
func readExport(ctx context.Context, path string, user func(export.User), bad func(*export.LineError)) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open export: %w", err)
	}
	defer f.Close()
	n, err := export.Scan(ctx, f, runtime.GOMAXPROCS(0), user, bad)
	if err != nil {
		return n, fmt.Errorf("read export %s: %w", path, err)
	}
	return n, nil
}

// atomicFile is a file written under a temporary name and renamed into
// place by Commit, so that a failed plan leaves no half-written output.
type atomicFile struct {
	*os.File
	path string
	done bool
}

func newAtomicFile(path string) (*atomicFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &atomicFile{File: f, path: path}, nil
}

// Commit syncs, closes and renames the file into place.
func (a *atomicFile) Commit() error {
	a.done = true
	if err := a.Sync(); err != nil {
		_ = a.Close()
		_ = os.Remove(a.Name())
		return fmt.Errorf("write %s: %w", a.path, err)
	}
	if err := a.Close(); err != nil {
		_ = os.Remove(a.Name())
		return fmt.Errorf("write %s: %w", a.path, err)
	}
	if err := os.Rename(a.Name(), a.path); err != nil {
		_ = os.Remove(a.Name())
		return fmt.Errorf("write %s: %w", a.path, err)
	}
	return nil
}

// Abort removes the file unless it was committed.
func (a *atomicFile) Abort() {
	if a.done {
		return
	}
	a.done = true
	_ = a.Close()
	_ = os.Remove(a.Name())
}

// trimText shortens s for the report.
func trimText(s string) string {
	const n = 160
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
