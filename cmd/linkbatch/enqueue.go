package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/internal/queue/redisq"
)

const enqueueUsage = `Usage: linkbatch enqueue --in FILE --to 'redis://HOST:PORT/DB?stream=NAME'

Adds one entry per row of a pairs CSV file to a Redis stream, for
'linkbatch run --in redis://...'. The entry's fields are the row's non-empty
columns (primary_user_id, secondary_user_id, secondary_provider,
connection_id, link_with). Rows are not checked here: an invalid one is
settled invalid, and dead-lettered, by the run that reads it. A line that
cannot be read as CSV is reported and left out (exit 1). The password comes
from the URL or LINKBATCH_REDIS_PASSWORD.
`

// enqueueBatch is how many entries one pipeline adds.
const enqueueBatch = 500

// enqueueCommand is 'linkbatch enqueue'.
func enqueueCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("linkbatch enqueue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, enqueueUsage, "\nFlags:\n"); printFlags(stderr, fs) }
	in := fs.String("in", "", "pairs CSV `file`; - reads standard input")
	to := fs.String("to", "", "the Redis stream, redis://HOST:PORT/DB?stream=NAME")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &commandError{"enqueue", &usageError{err}}
	}
	bad := func(format string, a ...any) error { return &commandError{"enqueue", usagef(format, a...)} }
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q", fs.Arg(0))
	case *in == "":
		return bad("--in is required")
	case *to == "":
		return bad("--to is required")
	}
	cfg, err := queue.Parse(*to, getenv)
	if err != nil {
		return bad("--to: %v", err)
	}
	if cfg.Kind != queue.Redis {
		return bad("--to: enqueue writes to a Redis stream (publish JSON bodies to a JetStream subject with the nats tool)")
	}
	var r io.Reader = stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("open input: %w", err)
		}
		defer f.Close()
		r = f
	}
	rd, err := batch.NewReader(r)
	if err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	b, err := redisq.Open(ctx, cfg, true) // a dry-run broker: it creates no group
	if err != nil {
		return err
	}
	defer b.Close()
	var (
		pipe    = b.Client().Pipeline()
		queued  int
		added   int
		skipped int
	)
	flush := func() error {
		if queued == 0 {
			return nil
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("redis %s: %w", cfg, err)
		}
		added += queued
		queued = 0
		return nil
	}
	for {
		row, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read input: %w", err)
		}
		fields := rowFields(row)
		if len(fields) == 0 {
			skipped++
			fmt.Fprintf(stderr, "linkbatch: line %d left out: %v\n", row.Line, row.Err)
			continue
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: cfg.Stream, Values: fields})
		if queued++; queued == enqueueBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d entries added to %s\n", added, cfg.Stream)
	if skipped > 0 {
		return fmt.Errorf("%w (%d input lines could not be read and were left out; the entries of the others were added)", errProblems, skipped)
	}
	return nil
}

// rowFields returns the non-empty columns of row as stream entry fields;
// none for a line that could not be read.
func rowFields(row batch.Row) []any {
	var out []any
	for _, f := range []struct{ name, v string }{
		{"primary_user_id", row.Primary}, {"secondary_user_id", row.Secondary},
		{"secondary_provider", row.SecondaryProvider}, {"connection_id", row.ConnectionID},
		{"link_with", row.LinkWith},
	} {
		if f.v != "" {
			out = append(out, f.name, f.v)
		}
	}
	return out
}
