package ratelimit

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

const linkURL = "https://acme.eu.auth0.com/api/v2/users/auth0%7C63d17c6a9d503d76c056c177/identities"

// apiErr is an answer of the given status, shaped as the linker client
// decodes the API's error body.
func apiErr(status int, code, msg string) *linker.APIError {
	return &linker.APIError{Status: status, Code: code, Title: http.StatusText(status), Message: msg}
}

func serverErr() *linker.APIError { return apiErr(503, "", "Service Unavailable") }

func badRequest() *linker.APIError {
	return apiErr(400, "invalid_body", "Payload validation error: 'Expected type string but found type null' on property user_id.")
}

func limitErr(reset time.Time) *linker.RateLimitError {
	return &linker.RateLimitError{
		APIError: *apiErr(429, "too_many_requests", "Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers."),
		Reset:    reset,
	}
}

func refused() error {
	return &url.Error{Op: "Post", URL: linkURL, Err: &net.OpError{
		Op: "dial", Net: "tcp",
		Addr: &net.TCPAddr{IP: net.IPv4(104, 16, 1, 2), Port: 443},
		Err:  os.NewSyscallError("connect", syscall.ECONNREFUSED),
	}}
}

func connReset() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

func TestBackoffBounds(t *testing.T) {
	const (
		minWait = 250 * time.Millisecond
		maxWait = 30 * time.Second
	)
	tests := []struct {
		attempt        int
		wantLo, wantHi time.Duration
	}{
		{math.MinInt, 250 * time.Millisecond, 500 * time.Millisecond},
		{0, 250 * time.Millisecond, 500 * time.Millisecond},
		{1, 250 * time.Millisecond, 500 * time.Millisecond},
		{2, 500 * time.Millisecond, time.Second},
		{3, time.Second, 2 * time.Second},
		{6, 8 * time.Second, 16 * time.Second},
		{7, 15 * time.Second, 30 * time.Second}, // 32s ceiling capped at 30s
		{8, 15 * time.Second, 30 * time.Second},
		{100, 15 * time.Second, 30 * time.Second},
		{math.MaxInt, 15 * time.Second, 30 * time.Second},
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempt), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 500 {
				got := Backoff(tt.attempt, minWait, maxWait, rnd)
				if got < tt.wantLo || got > tt.wantHi {
					t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", tt.attempt, got, tt.wantLo, tt.wantHi)
				}
				seen[got] = true
			}
			if len(seen) < 100 {
				t.Errorf("Backoff(%d) gave %d distinct values in 500 draws, want jitter", tt.attempt, len(seen))
			}
			if got := Backoff(tt.attempt, minWait, maxWait, nil); got != tt.wantHi {
				t.Errorf("Backoff(%d, nil rnd) = %v, want the ceiling %v", tt.attempt, got, tt.wantHi)
			}
		})
	}
}

func TestBackoffSameSeedSameSequence(t *testing.T) {
	a, b := rand.New(rand.NewPCG(7, 7)), rand.New(rand.NewPCG(7, 7))
	for attempt := 1; attempt <= 10; attempt++ {
		x := Backoff(attempt, 250*time.Millisecond, 30*time.Second, a)
		y := Backoff(attempt, 250*time.Millisecond, 30*time.Second, b)
		if x != y {
			t.Fatalf("attempt %d: %v and %v from equal seeds", attempt, x, y)
		}
	}
}

func TestBackoffDegenerateBounds(t *testing.T) {
	tests := []struct {
		name             string
		minWait, maxWait time.Duration
		want             time.Duration
	}{
		{"no max", time.Second, 0, 0},
		{"max below min", 2 * time.Second, time.Second, 2 * time.Second},
		{"huge bounds do not overflow", time.Duration(math.MaxInt64 / 3), time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Backoff(5, tt.minWait, tt.maxWait, nil); got != tt.want {
				t.Errorf("Backoff(5, %v, %v) = %v, want %v", tt.minWait, tt.maxWait, got, tt.want)
			}
		})
	}
}
