package linker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
)

func TestRedactErrorKeepsChain(t *testing.T) {
	const secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln"
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("refused " + secret)}
	tests := []struct {
		name  string
		err   error
		check func(error) bool
	}{
		{"deadline", fmt.Errorf("post %s: %w", secret, context.DeadlineExceeded), func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{"net error", fmt.Errorf("post: %w", opErr), func(err error) bool {
			var ne *net.OpError
			return errors.As(err, &ne)
		}},
		{"rate limit", fmt.Errorf("link: %w", &RateLimitError{APIError: APIError{Status: 429, Message: "slow down " + secret}}), func(err error) bool {
			var rl *RateLimitError
			return errors.As(err, &rl) && !strings.Contains(rl.Message, secret)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := redactError(tt.err, secret)
			if strings.Contains(got.Error(), secret) || !strings.Contains(got.Error(), "[REDACTED]") {
				t.Errorf("Error() = %q, want the secret masked", got)
			}
			if !tt.check(got) {
				t.Errorf("redactError(%v) = %#v lost its chain", tt.err, got)
			}
		})
	}
}

func TestHoldsCredential(t *testing.T) {
	tests := []struct {
		text   string
		strict bool
		want   bool
	}{
		{"grant_type=client_credentials&client_id=abc&client_secret=zz99", true, true},
		{"Authorization: Bearer TOKSECRET-a1b2c3", true, true},
		{`{"link_with":"eyJhbGciOi`, false, true},
		{"link_with eyJhbGciOi", true, true},
		{"Payload validation error: 'Missing required property: link_with'", false, false},
		{"password=hunter2", false, true},
		{"refresh_token=abc", false, true},
		{"Bad HTTP authentication header format", false, false},
		{"Insufficient scope, expected any of: update:users", false, false},
		{"upstream connect error", true, false},
	}
	for _, tt := range tests {
		if got := holdsCredential(tt.text, tt.strict); got != tt.want {
			t.Errorf("holdsCredential(%q, %v) = %v, want %v", tt.text, tt.strict, got, tt.want)
		}
	}
}
