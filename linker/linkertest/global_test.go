package linkertest_test

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// A global limit of 2/s, burst 10, under an announced bucket of 50 at 10/s:
// the eleventh request at once is refused with "Global limit has been
// reached" while the headers still show tokens, and takes none of them.
func TestGlobalLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := linkertest.NewServer(linkertest.Config{InMemory: true,
			RateLimit:   linkertest.RateLimit{Burst: 50, Rate: 10},
			GlobalLimit: linkertest.RateLimit{Burst: 10, Rate: 2}})
		defer s.Close()
		tok := s.IssueToken(0)
		for i := range 10 {
			if a := getUser(t, s, tok, "auth0|nobody"); a.status != http.StatusNotFound {
				t.Fatalf("request %d: status %d, want 404 (let through)", i+1, a.status)
			}
		}
		a := getUser(t, s, tok, "auth0|nobody")
		if a.status != http.StatusTooManyRequests {
			t.Fatalf("11th request: status %d, want 429", a.status)
		}
		if e := a.apiErr(t); e.Message != "Global limit has been reached" || e.ErrorCode != "too_many_requests" {
			t.Errorf("11th request: body %+v", e)
		}
		if got := rateHeaders(t, a, start); got.limit != 50 || got.remaining != 40 {
			t.Errorf("11th request: headers %+v, want the announced bucket untouched: limit 50, remaining 40", got)
		}
		// Half a second later the global limit has one token again.
		time.Sleep(500 * time.Millisecond)
		if a := getUser(t, s, tok, "auth0|nobody"); a.status != http.StatusNotFound {
			t.Errorf("after 500ms: status %d, want 404", a.status)
		}
		if st := s.Stats(); st.RateLimited != 1 {
			t.Errorf("stats: %d answered 429, want 1", st.RateLimited)
		}
	})
}
