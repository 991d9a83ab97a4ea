package queue_test

import (
	"fmt"

	"github.com/linkbatch/linkbatch/internal/queue"
)

func ExampleParse() {
	cfg, err := queue.Parse("redis://worker:s3cret@127.0.0.1:6379/0?stream=links&group=linkbatch&consumer=w1&claim-idle=30s", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Kind, cfg.Stream, cfg.Group, cfg.Consumer, cfg.Dead, cfg.ClaimIdle, cfg.MaxDeliveries)
	fmt.Println(cfg)
	// Output:
	// redis links linkbatch w1 links:dead 30s 5
	// redis://worker:xxxxx@127.0.0.1:6379?claim-idle=30s&consumer=w1&dead=links%3Adead&group=linkbatch&max-deliveries=5&stream=links
}
