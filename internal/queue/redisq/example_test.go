package redisq_test

import (
	"context"
	"fmt"
	"os"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/internal/queue/redisq"
)

// Example drains the stream links of a local Redis into a results file:
// each request is acknowledged once its result is synced to the file, and
// a request whose result the file holds already is acknowledged without a
// second one. (It needs a redis-server and a tenant, so it is not run.)
func Example() {
	ctx := context.Background()
	cfg, err := queue.Parse("redis://127.0.0.1:6379/0?stream=links&claim-idle=30s", os.Getenv)
	if err != nil {
		fmt.Println(err)
		return
	}
	done, err := queue.ReadDone("results.csv")
	if err != nil {
		fmt.Println(err)
		return
	}
	src, _, err := redisq.NewSource(ctx, cfg, queue.Options{Drain: true, Done: func(id string) bool { return done[id] }})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	sink, err := queue.OpenFileSink("results.csv")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sink.Close()
	runner := &batch.Runner{Config: batch.DefaultConfig()} // and a Client and Pacer for the tenant
	runner.Config.DryRun = true
	sum, err := runner.RunSource(ctx, src, sink)
	fmt.Println(sum.Rows, err)
}
