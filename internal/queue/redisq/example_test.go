package redisq_test

import (
	"context"
	"fmt"
	"os"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/internal/queue/redisq"
)

// Example checks the requests waiting in the stream links of a local Redis
// without acknowledging anything or creating the group (a dry run), and
// writes a planned or invalid result for each to audit.csv, with its
// message id. A real run gives the runner a linker.Client and a
// ratelimit.Pacer and drops DryRun. (It needs a redis-server, so it is
// not run.)
func Example() {
	ctx := context.Background()
	cfg, err := queue.Parse("redis://127.0.0.1:6379/0?stream=links", os.Getenv)
	if err != nil {
		fmt.Println(err)
		return
	}
	src, _, err := redisq.NewSource(ctx, cfg, queue.Options{Drain: true, DryRun: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	sink, err := queue.OpenFileSink("audit.csv")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sink.Close()
	runner := &batch.Runner{Config: batch.DefaultConfig()}
	runner.Config.DryRun = true
	sum, err := runner.RunSource(ctx, src, sink)
	fmt.Println(sum.Counts[batch.StatusPlanned], "planned,", sum.Counts[batch.StatusInvalid], "invalid", err)
}
