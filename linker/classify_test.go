package linker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

func apiErr(status int, code, msg string) *linker.APIError {
	return &linker.APIError{Status: status, Code: code, Title: http.StatusText(status), Message: msg}
}

func limitErr(reset time.Time) *linker.RateLimitError {
	return &linker.RateLimitError{APIError: *apiErr(429, "too_many_requests", "Too many requests."), Reset: reset}
}

func TestRetryable(t *testing.T) {
	var syntaxErr *json.SyntaxError
	decodeErr := json.Unmarshal([]byte(`{"user_id":`), &struct{}{})
	if !errors.As(decodeErr, &syntaxErr) {
		t.Fatalf("setup: want a *json.SyntaxError, got %T", decodeErr)
	}
	serverErr := apiErr(503, "", "Service Unavailable")
	badRequest := apiErr(400, "invalid_body", "Payload validation error: 'Expected type string but found type null' on property user_id.")
	refused := &url.Error{Op: "Post", URL: linkURL, Err: &net.OpError{
		Op: "dial", Net: "tcp",
		Addr: &net.TCPAddr{IP: net.IPv4(104, 16, 1, 2), Port: 443},
		Err:  os.NewSyscallError("connect", syscall.ECONNREFUSED),
	}}
	connReset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}

	tests := []struct {
		name string
		give error
		want bool
	}{
		{"success", nil, false},
		{"429", limitErr(time.Unix(1675452600, 0)), true},
		{"429 wrapped", fmt.Errorf("link auth0|a <- auth0|b: %w", limitErr(time.Time{})), true},
		{"500", apiErr(500, "", "Internal Server Error"), true},
		{"502", apiErr(502, "", ""), true},
		{"503 wrapped", fmt.Errorf("link auth0|a <- auth0|b: %w", serverErr), true},
		{"504", apiErr(504, "", ""), true},
		{"501", apiErr(501, "", "Not Implemented"), false},
		{"408", apiErr(408, "", "Request Timeout"), true},
		{"400", badRequest, false},
		{"400 wrapped", fmt.Errorf("link auth0|a <- auth0|b: %w", badRequest), false},
		{"401", apiErr(401, "invalid_token", "Expired token received for JSON Web Token validation"), false},
		{"403", apiErr(403, "insufficient_scope", "Insufficient scope; expected: update:users, update:current_user_identities."), false},
		{"404", apiErr(404, "inexistent_user", "User not found."), false},
		{"409", apiErr(409, "", linker.MsgIdentityExists), false},
		{"connection refused", refused, true},
		{"connection reset", fmt.Errorf("link auth0|a <- auth0|b: %w", connReset), true},
		{"EOF", &url.Error{Op: "Post", URL: linkURL, Err: io.EOF}, true},
		{"unexpected EOF", fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), true},
		{"per-attempt timeout", &url.Error{Op: "Post", URL: linkURL, Err: context.DeadlineExceeded}, true},
		{"bare deadline", context.DeadlineExceeded, true},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", Name: "acme.eu.auth0.com", IsTimeout: true}, true},
		{"dns no such host", &url.Error{Op: "Post", URL: linkURL, Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "acme.eu.auth0.com", IsNotFound: true}}}, false},
		{"cancel", &url.Error{Op: "Post", URL: linkURL, Err: context.Canceled}, false},
		{"undecodable 201 body", fmt.Errorf("decode identities: %w", decodeErr), false},
		{"plain error", errors.New("link request: user_id is empty"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := linker.Retryable(tt.give); got != tt.want {
				t.Errorf("Retryable(%v) = %t, want %t", tt.give, got, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	reset := time.Unix(1675452600, 0)
	tests := []struct {
		name                             string
		give                             error
		rateLimited, notFound, forbidden bool
		retryAt                          time.Time
	}{
		{name: "nil"},
		{name: "transport", give: io.ErrUnexpectedEOF},
		{name: "429", give: fmt.Errorf("link: %w", limitErr(reset)), rateLimited: true, retryAt: reset},
		{name: "429 without reset", give: limitErr(time.Time{}), rateLimited: true},
		{name: "404", give: fmt.Errorf("get user: %w", apiErr(404, "inexistent_user", "User not found.")), notFound: true},
		{name: "403", give: apiErr(403, "insufficient_scope", ""), forbidden: true},
		{name: "401", give: apiErr(401, "invalid_token", "")},
		{name: "409", give: apiErr(409, "", linker.MsgIdentityExists)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := linker.IsRateLimited(tt.give); got != tt.rateLimited {
				t.Errorf("IsRateLimited = %t, want %t", got, tt.rateLimited)
			}
			if got := linker.RetryAt(tt.give); !got.Equal(tt.retryAt) {
				t.Errorf("RetryAt = %v, want %v", got, tt.retryAt)
			}
			if got := linker.IsNotFound(tt.give); got != tt.notFound {
				t.Errorf("IsNotFound = %t, want %t", got, tt.notFound)
			}
			if got := linker.IsForbidden(tt.give); got != tt.forbidden {
				t.Errorf("IsForbidden = %t, want %t", got, tt.forbidden)
			}
		})
	}
}
