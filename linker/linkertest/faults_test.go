package linkertest_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

func TestFaultErr5xx(t *testing.T) {
	s := newServer(t, linkertest.Config{Faults: linkertest.Faults{Err5xx: 1}})
	s.Seed("auth0|p", "auth0|s")
	tok := s.IssueToken(0)
	seen := map[int]bool{}
	for range 30 {
		a := link(t, s, tok, "auth0|p", "auth0", "s")
		if a.status != 500 && a.status != 502 && a.status != 503 {
			t.Fatalf("status = %d, want 500, 502 or 503", a.status)
		}
		a.apiErr(t)
		if a.header.Get("X-RateLimit-Remaining") == "" {
			t.Error("no rate-limit headers on a 5xx")
		}
		seen[a.status] = true
	}
	if len(seen) != 3 {
		t.Errorf("statuses seen = %v, want all three", seen)
	}
	if _, linked := s.LinkedTo("auth0|s"); linked {
		t.Error("a 5xx answer applied the link")
	}
	if st := s.Stats(); st.Injected5xx != 30 || st.LinksApplied != 0 {
		t.Errorf("stats = %+v", st)
	}
	s.SetFaults(linkertest.Faults{})
	link(t, s, tok, "auth0|p", "auth0", "s").identities(t)
}

func TestFaultDropBefore(t *testing.T) {
	s := newServer(t, linkertest.Config{Faults: linkertest.Faults{DropBefore: 1}})
	s.Seed("auth0|p", "auth0|s")
	tok := s.IssueToken(0)
	if _, err := send(t.Context(), s, http.MethodPost, linkPath("auth0|p"), tok, ctJSON,
		`{"provider":"auth0","user_id":"s"}`); err == nil {
		t.Fatal("link request answered, want a closed connection")
	}
	if _, linked := s.LinkedTo("auth0|s"); linked {
		t.Error("a dropped request applied the link")
	}
	// Reads are not dropped.
	getUser(t, s, tok, "auth0|p").want(t, http.StatusOK, "", "")
	if st := s.Stats(); st.DroppedBefore != 1 || st.Posts != 1 || st.ByStatus[200] != 1 || len(st.ByStatus) != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestFaultDropAfter(t *testing.T) {
	s := newServer(t, linkertest.Config{Faults: linkertest.Faults{DropAfter: 1}})
	s.Seed("auth0|p", "auth0|s")
	tok := s.IssueToken(0)
	if _, err := send(t.Context(), s, http.MethodPost, linkPath("auth0|p"), tok, ctJSON,
		`{"provider":"auth0","user_id":"s"}`); err == nil {
		t.Fatal("link request answered, want a closed connection")
	}
	if p, _ := s.LinkedTo("auth0|s"); p != "auth0|p" {
		t.Error("DropAfter did not apply the link")
	}
	// The retry a client makes after losing the answer.
	s.SetFaults(linkertest.Faults{})
	link(t, s, tok, "auth0|p", "auth0", "s").want(t, http.StatusConflict, "identity_conflict", "Specified identity already exists.")
	if st := s.Stats(); st.DroppedAfter != 1 || st.LinksApplied != 1 || st.Relinks != 1 || st.DoubleLinks != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestFaultHang(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := linkertest.NewServer(linkertest.Config{InMemory: true,
			Faults: linkertest.Faults{Hang: 1, HangFor: 10 * time.Second}})
		defer s.Close()
		s.Seed("auth0|p", "auth0|s", "auth0|t")
		tok := s.IssueToken(0)

		// A client that gives up first: nothing is applied, ever.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		_, err := send(ctx, s, http.MethodPost, linkPath("auth0|p"), tok, ctJSON, `{"provider":"auth0","user_id":"s"}`)
		cancel()
		if err == nil {
			t.Fatal("answered before the stall ended")
		}
		synctest.Wait()
		time.Sleep(time.Minute)
		if _, linked := s.LinkedTo("auth0|s"); linked {
			t.Error("an abandoned request applied the link")
		}

		// A patient client gets its answer after the stall.
		start := time.Now()
		link(t, s, tok, "auth0|p", "auth0", "t").identities(t)
		if d := time.Since(start); d != 10*time.Second {
			t.Errorf("answered after %v, want 10s", d)
		}
		if st := s.Stats(); st.Stalled != 2 || st.Abandoned != 1 || st.LinksApplied != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestFaultLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := linkertest.NewServer(linkertest.Config{InMemory: true, Seed: 7,
			Faults: linkertest.Faults{Latency: 200 * time.Millisecond}})
		defer s.Close()
		tok := s.IssueToken(0)
		start := time.Now()
		getUser(t, s, tok, "auth0|x")
		if d := time.Since(start); d != 200*time.Millisecond {
			t.Errorf("latency = %v, want 200ms", d)
		}
		s.SetFaults(linkertest.Faults{Latency: 200 * time.Millisecond, Jitter: 100 * time.Millisecond})
		var delays []time.Duration
		for range 20 {
			start := time.Now()
			getUser(t, s, tok, "auth0|x")
			d := time.Since(start)
			if d < 200*time.Millisecond || d >= 300*time.Millisecond {
				t.Errorf("latency = %v, want in [200ms, 300ms)", d)
			}
			delays = append(delays, d)
		}
		slices.Sort(delays)
		if delays[0] == delays[len(delays)-1] {
			t.Error("no jitter")
		}
	})
}

// Close ends stalled requests at once, without applying them.
func TestCloseEndsStalledRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := linkertest.NewServer(linkertest.Config{InMemory: true,
			Faults: linkertest.Faults{Hang: 1, HangFor: time.Hour}})
		s.Seed("auth0|p", "auth0|s")
		tok := s.IssueToken(0)
		start := time.Now()
		errc := make(chan error, 1)
		go func() {
			_, err := send(t.Context(), s, http.MethodPost, linkPath("auth0|p"), tok, ctJSON, `{"provider":"auth0","user_id":"s"}`)
			errc <- err
		}()
		synctest.Wait()
		s.Close()
		if err := <-errc; err == nil {
			t.Error("a stalled request was answered after Close")
		}
		if time.Since(start) != 0 {
			t.Errorf("Close waited %v", time.Since(start))
		}
		if _, linked := s.LinkedTo("auth0|s"); linked {
			t.Error("a request cut by Close applied the link")
		}
		s.Close()
	})
}

// The same seed gives the same faults for the same sequence of requests.
func TestFaultsAreSeeded(t *testing.T) {
	statuses := func(seed int64) []int {
		s := newServer(t, linkertest.Config{Seed: seed, Faults: linkertest.Faults{Err5xx: 0.5}})
		tok := s.IssueToken(0)
		var got []int
		for range 40 {
			got = append(got, getUser(t, s, tok, "auth0|x").status)
		}
		return got
	}
	a, b, c := statuses(1), statuses(1), statuses(2)
	if !slices.Equal(a, b) {
		t.Errorf("seed 1 gave %v then %v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 1 and 2 both gave %v", a)
	}
	if n := len(slices.DeleteFunc(slices.Clone(a), func(s int) bool { return s < 500 })); n < 8 || n > 32 {
		t.Errorf("%d of 40 answers were 5xx at Err5xx 0.5", n)
	}
}
