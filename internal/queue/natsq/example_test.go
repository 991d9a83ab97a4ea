package natsq_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/queue"
	"github.com/linkbatch/linkbatch/internal/queue/natsq"
)

// Example drains a JetStream stream of two requests, one of them poison,
// acknowledging each as the pool would once its result is durable.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "natsq-example-*")
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	go ns.Start()
	defer ns.Shutdown()
	ns.ReadyForConnections(10 * time.Second)
	nc, _ := nats.Connect(ns.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LINKS", Subjects: []string{"links"}}); err != nil {
		fmt.Println(err)
		return
	}
	js.Publish(ctx, "links", []byte(`{"primary_user_id":"auth0|a","secondary_user_id":"github|b"}`))
	js.Publish(ctx, "links", []byte(`{"primary_user_id":"auth0|a","second":"github|c"}`))

	cfg, _ := queue.Parse("nats://"+ns.Addr().String()+"?stream=LINKS&consumer=workers", nil)
	src, err := natsq.NewSource(ctx, cfg, queue.Options{Drain: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	for {
		row, ack, err := src.Read(ctx)
		if errors.Is(err, batch.ErrEndOfInput) {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("message %s: %s, err: %v\n", row.MessageID, row, row.Err)
		if err := ack(ctx); err != nil { // poison: terminated with the reason
			fmt.Println(err)
		}
	}
	st := src.Stats()
	fmt.Println("acknowledged", st.Acked, "terminated", st.DeadLettered)
	// Output:
	// message 1: line 1: auth0|a <- github|b, err: <nil>
	// message 2: line 2: auth0|a <- , err: message: field "second" is not a column (want primary_user_id, secondary_user_id, secondary_provider, connection_id, link_with)
	// acknowledged 2 terminated 1
}
