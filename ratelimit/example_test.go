package ratelimit_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/ratelimit"
)

func ExampleCheckRetry() {
	ctx := context.Background()
	outcomes := []error{
		&linker.APIError{Status: 503, Title: "Service Unavailable"},
		&linker.RateLimitError{
			APIError: linker.APIError{Status: 429, Title: "Too Many Requests", Code: "too_many_requests"},
			Reset:    time.Unix(1675452600, 0),
		},
		&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
		&linker.APIError{Status: 404, Title: "Not Found", Message: "User not found.", Code: "inexistent_user"},
		&linker.APIError{Status: 501, Title: "Not Implemented"},
	}
	for _, err := range outcomes {
		fmt.Printf("retry=%-5t %v\n", ratelimit.CheckRetry(ctx, nil, err), err)
	}
	// Output:
	// retry=true  503 Service Unavailable
	// retry=true  429 Too Many Requests (too_many_requests), reset at 2023-02-03T19:30:00Z
	// retry=true  dial tcp: connect: connection refused
	// retry=false 404 Not Found: User not found. (inexistent_user)
	// retry=false 501 Not Implemented
}
