package linkertest_test

import (
	"net/http"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// rl is what the rate-limit headers of an answer say.
type rl struct {
	limit, remaining int
	reset            int64 // seconds after the start of the test
	retryAfter       string
}

// rateHeaders reads the rate-limit headers, reset relative to start.
func rateHeaders(t *testing.T, a answer, start time.Time) rl {
	t.Helper()
	num := func(name string) int64 {
		n, err := strconv.ParseInt(a.header.Get(name), 10, 64)
		if err != nil {
			t.Fatalf("header %s: %v", name, err)
		}
		return n
	}
	return rl{
		limit:      int(num("X-RateLimit-Limit")),
		remaining:  int(num("X-RateLimit-Remaining")),
		reset:      num("X-RateLimit-Reset") - start.Unix(),
		retryAfter: a.header.Get("Retry-After"),
	}
}

func TestRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := linkertest.NewServer(linkertest.Config{InMemory: true,
			RateLimit: linkertest.RateLimit{Burst: 2, Rate: 1, RetryAfter: true}})
		defer s.Close()
		s.Seed("auth0|p", "auth0|s")
		tok := s.IssueToken(0)

		// Steps in order; wait is slept before the request.
		tests := []struct {
			name       string
			wait       time.Duration
			post       bool // link auth0|s into auth0|p instead of a GET
			wantStatus int
			want       rl
		}{
			{"first", 0, false, 200, rl{2, 1, 1, ""}},
			{"second empties the bucket", 0, false, 200, rl{2, 0, 2, ""}},
			{"third is refused", 0, true, 429, rl{2, 0, 2, "1"}},
			{"half a token later", 500 * time.Millisecond, true, 429, rl{2, 0, 2, "1"}},
			{"one token later", 500 * time.Millisecond, true, 201, rl{2, 0, 3, ""}},
			{"refill is capped at the burst", time.Hour, false, 200, rl{2, 1, 3601 + 1, ""}},
		}
		for _, tt := range tests {
			time.Sleep(tt.wait)
			var a answer
			if tt.post {
				a = link(t, s, tok, "auth0|p", "auth0", "s")
			} else {
				a = getUser(t, s, tok, "auth0|p")
			}
			if a.status != tt.wantStatus {
				t.Fatalf("%s: status = %d (%s), want %d", tt.name, a.status, a.body, tt.wantStatus)
			}
			if got := rateHeaders(t, a, start); got != tt.want {
				t.Errorf("%s: headers = %+v, want %+v", tt.name, got, tt.want)
			}
			if a.status == http.StatusTooManyRequests {
				e := a.apiErr(t)
				want := apiError{429, "Too Many Requests", "Too many requests. Check the X-RateLimit-Limit, " +
					"X-RateLimit-Remaining and X-RateLimit-Reset headers.", "too_many_requests"}
				if e != want {
					t.Errorf("%s: body = %+v", tt.name, e)
				}
				if _, linked := s.LinkedTo("auth0|s"); linked {
					t.Fatalf("%s: a refused request linked", tt.name)
				}
			}
		}
		if st := s.Stats(); st.RateLimited != 2 || st.ByStatus[429] != 2 || st.LinksApplied != 1 {
			t.Errorf("stats = %+v", st)
		}
		// /oauth/token does not draw from the bucket.
		for range 5 {
			if a := call(t, s, http.MethodPost, "/oauth/token", "", ctForm, "grant_type=x"); a.status != 400 {
				t.Errorf("/oauth/token = %d, want 400", a.status)
			}
		}
	})
}

// Another client using part of the refill slows ours down.
func TestRateLimitExternalLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := linkertest.NewServer(linkertest.Config{InMemory: true,
			RateLimit: linkertest.RateLimit{Burst: 10, Rate: 10, ExternalLoad: 0.5}})
		defer s.Close()
		tok := s.IssueToken(0)
		count := func() (ok int, last answer) {
			for {
				a := getUser(t, s, tok, "auth0|nobody")
				if a.status == http.StatusTooManyRequests {
					return ok, last
				}
				ok, last = ok+1, a
			}
		}
		if n, _ := count(); n != 10 {
			t.Errorf("first second: %d requests, want the burst of 10", n)
		}
		time.Sleep(time.Second)
		n, last := count()
		if n != 5 {
			t.Errorf("after a second: %d requests, want 5 (half of the refill)", n)
		}
		// The last success left 0 tokens; 10 more take 2s at 5/s.
		if got := rateHeaders(t, last, start); got != (rl{10, 0, 1 + 2, ""}) {
			t.Errorf("headers = %+v", got)
		}
		if a := getUser(t, s, tok, "auth0|nobody"); a.header.Get("Retry-After") != "" {
			t.Error("Retry-After sent without the option")
		}
	})
}

func TestRateLimitUnlimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := linkertest.NewServer(linkertest.Config{InMemory: true})
		defer s.Close()
		tok := s.IssueToken(0)
		for range 50 {
			a := getUser(t, s, tok, "auth0|nobody")
			a.want(t, http.StatusNotFound, "inexistent_user", "User not found.")
			if got := rateHeaders(t, a, start); got != (rl{linkertest.UnlimitedBurst, linkertest.UnlimitedBurst - 1, 0, ""}) {
				t.Fatalf("headers = %+v", got)
			}
		}

		// Limits can be set and changed while serving.
		s.SetRateLimit(linkertest.RateLimit{Burst: 1, Rate: 0.5})
		getUser(t, s, tok, "auth0|nobody").want(t, http.StatusNotFound, "inexistent_user", "User not found.")
		getUser(t, s, tok, "auth0|nobody").want(t, http.StatusTooManyRequests, "too_many_requests", "Too many requests.")
		s.SetRateLimit(linkertest.RateLimit{Burst: 5, Rate: 100})
		time.Sleep(10 * time.Millisecond)
		a := getUser(t, s, tok, "auth0|nobody")
		if got := rateHeaders(t, a, start); a.status != 404 || got.limit != 5 || got.remaining != 0 {
			t.Errorf("after SetRateLimit: %d %+v", a.status, got)
		}
		s.SetRateLimit(linkertest.RateLimit{})
		for range 10 {
			getUser(t, s, tok, "auth0|nobody").want(t, http.StatusNotFound, "inexistent_user", "User not found.")
		}
	})
}

// A bucket that never refills points its reset a day ahead.
func TestRateLimitNoRefill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := linkertest.NewServer(linkertest.Config{InMemory: true,
			RateLimit: linkertest.RateLimit{Burst: 1, RetryAfter: true}})
		defer s.Close()
		tok := s.IssueToken(0)
		getUser(t, s, tok, "auth0|nobody")
		a := getUser(t, s, tok, "auth0|nobody")
		if got := rateHeaders(t, a, start); a.status != 429 || got != (rl{1, 0, 86400, "86400"}) {
			t.Errorf("%d %+v", a.status, got)
		}
	})
}
