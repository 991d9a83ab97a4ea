package linker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

func TestErrorHelpers(t *testing.T) {
	expired := &linker.APIError{Status: 401, Title: "Unauthorized", Code: "invalid_token",
		Message: "Expired token received for JSON Web Token validation"}
	tests := []struct {
		name          string
		err           error
		wantStatus    int
		wantAuth      bool
		wantExpired   bool
		wantMaybeDone bool
	}{
		{name: "nil", err: nil},
		{name: "transport", err: fmt.Errorf("link auth0|a: %w", context.DeadlineExceeded)},
		{name: "expired", err: expired, wantStatus: 401, wantAuth: true, wantExpired: true},
		{name: "expired wrapped twice", err: fmt.Errorf("outer: %w", fmt.Errorf("link auth0|a: %w", expired)),
			wantStatus: 401, wantAuth: true, wantExpired: true},
		{name: "invalid token", err: &linker.APIError{Status: 401, Message: "Invalid token."}, wantStatus: 401, wantAuth: true},
		{name: "expired text on 403 is not expiry", err: &linker.APIError{Status: 403, Message: "expired"}, wantStatus: 403, wantAuth: true},
		{name: "insufficient scope", err: &linker.APIError{Status: 403, Code: "insufficient_scope",
			Message: "Insufficient scope; expected: update:users, update:current_user_identities."}, wantStatus: 403, wantAuth: true},
		{name: "409 exists", err: &linker.APIError{Status: 409, Message: linker.MsgIdentityExists}, wantStatus: 409, wantMaybeDone: true},
		{name: "400 inexistent identity", err: &linker.APIError{Status: 400, Message: linker.MsgInexistentIdentity}, wantStatus: 400, wantMaybeDone: true},
		{name: "400 same identity", err: &linker.APIError{Status: 400, Message: linker.MsgSameIdentity}, wantStatus: 400},
		{name: "400 other", err: &linker.APIError{Status: 400, Message: "Payload validation error"}, wantStatus: 400},
		{name: "404", err: &linker.APIError{Status: 404, Message: "User not found."}, wantStatus: 404},
		{name: "rate limit", err: fmt.Errorf("link x: %w", &linker.RateLimitError{APIError: linker.APIError{Status: 429}}), wantStatus: 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := linker.StatusOf(tt.err); got != tt.wantStatus {
				t.Errorf("StatusOf = %d, want %d", got, tt.wantStatus)
			}
			if got := linker.IsAuth(tt.err); got != tt.wantAuth {
				t.Errorf("IsAuth = %v, want %v", got, tt.wantAuth)
			}
			if got := linker.IsTokenExpired(tt.err); got != tt.wantExpired {
				t.Errorf("IsTokenExpired = %v, want %v", got, tt.wantExpired)
			}
			if got := linker.IsMaybeAlreadyLinked(tt.err); got != tt.wantMaybeDone {
				t.Errorf("IsMaybeAlreadyLinked = %v, want %v", got, tt.wantMaybeDone)
			}
		})
	}
}

func TestRateLimitErrorUnwrapsToAPIError(t *testing.T) {
	reset := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rle := &linker.RateLimitError{APIError: linker.APIError{Status: 429, Title: "Too Many Requests",
		Code: "too_many_requests", Message: "Too many requests."}, Reset: reset}
	err := fmt.Errorf("link auth0|a: %w", rle)

	var ae *linker.APIError
	if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "too_many_requests" {
		t.Fatalf("errors.As(*APIError) = %+v", ae)
	}
	var got *linker.RateLimitError
	if !errors.As(err, &got) || !got.Reset.Equal(reset) {
		t.Fatalf("errors.As(*RateLimitError) = %+v", got)
	}
	want := "link auth0|a: 429 Too Many Requests: Too many requests. (too_many_requests), reset at 2026-03-01T12:00:00Z"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestAPIErrorText(t *testing.T) {
	tests := []struct {
		err  *linker.APIError
		want string
	}{
		{&linker.APIError{Status: 404, Title: "Not Found", Message: "User not found.", Code: "inexistent_user"},
			"404 Not Found: User not found. (inexistent_user)"},
		{&linker.APIError{Status: 502}, "502 Bad Gateway"},
		{&linker.APIError{Status: 599, Message: "odd"}, "599: odd"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	if s := (&linker.RateLimitError{APIError: linker.APIError{Status: http.StatusTooManyRequests}}).Error(); strings.Contains(s, "reset") {
		t.Errorf("RateLimitError without Reset = %q, want no reset time", s)
	}
}
