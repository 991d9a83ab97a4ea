package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

func TestCheckRetry(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	var syntaxErr *json.SyntaxError
	decodeErr := json.Unmarshal([]byte(`{"user_id":`), &struct{}{})
	if !errors.As(decodeErr, &syntaxErr) {
		t.Fatalf("setup: want a *json.SyntaxError, got %T", decodeErr)
	}

	tests := []struct {
		name string
		ctx  context.Context
		give error
		want bool
	}{
		{"success", live, nil, false},
		{"429", live, limitErr(time.Unix(1675452600, 0)), true},
		{"429 wrapped", live, fmt.Errorf("link auth0|a <- auth0|b: %w", limitErr(time.Time{})), true},
		{"500", live, apiErr(500, "", "Internal Server Error"), true},
		{"502", live, apiErr(502, "", ""), true},
		{"503 wrapped", live, fmt.Errorf("link auth0|a <- auth0|b: %w", serverErr()), true},
		{"504", live, apiErr(504, "", ""), true},
		{"501", live, apiErr(501, "", "Not Implemented"), false},
		{"408", live, apiErr(408, "", "Request Timeout"), true},
		{"400", live, badRequest(), false},
		{"400 wrapped", live, fmt.Errorf("link auth0|a <- auth0|b: %w", badRequest()), false},
		{"401", live, apiErr(401, "invalid_token", "Expired token received for JSON Web Token validation"), false},
		{"403", live, apiErr(403, "insufficient_scope", "Insufficient scope; expected: update:users, update:current_user_identities."), false},
		{"404", live, apiErr(404, "inexistent_user", "User not found."), false},
		{"409", live, apiErr(409, "", linker.MsgIdentityExists), false},
		{"connection refused", live, refused(), true},
		{"connection reset", live, fmt.Errorf("link auth0|a <- auth0|b: %w", connReset()), true},
		{"EOF", live, &url.Error{Op: "Post", URL: linkURL, Err: io.EOF}, true},
		{"unexpected EOF", live, fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), true},
		{"per-attempt timeout", live, &url.Error{Op: "Post", URL: linkURL, Err: context.DeadlineExceeded}, true},
		{"bare deadline", live, context.DeadlineExceeded, true},
		{"dns timeout", live, &net.DNSError{Err: "i/o timeout", Name: "acme.eu.auth0.com", IsTimeout: true}, true},
		{"dns no such host", live, &url.Error{Op: "Post", URL: linkURL, Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "acme.eu.auth0.com", IsNotFound: true}}}, false},
		{"cancel not from ctx", live, &url.Error{Op: "Post", URL: linkURL, Err: context.Canceled}, false},
		{"undecodable 201 body", live, fmt.Errorf("decode identities: %w", decodeErr), false},
		{"plain error", live, errors.New("link request: user_id is empty"), false},
		{"503 after cancel", cancelled, serverErr(), false},
		{"429 after cancel", cancelled, limitErr(time.Time{}), false},
		{"refused after cancel", cancelled, refused(), false},
		{"success after cancel", cancelled, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckRetry(tt.ctx, nil, tt.give); got != tt.want {
				t.Errorf("CheckRetry(%v) = %t, want %t", tt.give, got, tt.want)
			}
		})
	}
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
