package batch

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// answerServer is a tenant that answers every link with answer and every
// read of a user with identities (holding the secondary when holds is set).
type answerServer struct {
	posts  atomic.Int32
	gets   atomic.Int32
	answer func(w http.ResponseWriter, r *http.Request)
	holds  bool
}

func (s *answerServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/identities"):
		s.posts.Add(1)
		s.answer(w, r)
	case r.Method == http.MethodGet:
		s.gets.Add(1)
		ids := `[{"provider":"auth0","user_id":"p1","connection":"db"}`
		if s.holds {
			ids += `,{"provider":"github","user_id":"s1","connection":"github"}`
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"user_id":"auth0|p1","identities":%s]}`, ids)
	default:
		http.NotFound(w, r)
	}
}

// runAgainst runs one row against srv, with bodyWait as the client's limit
// on the body of a 2xx answer.
func runAgainst(t *testing.T, s *answerServer, bodyWait time.Duration) Result {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client, err := linker.NewClient(base, linker.StaticToken("eyJhbGciOiJub25lIn0.e30.c2ln"),
		linker.WithHTTPClient(srv.Client()), linker.WithBodyWait(bodyWait))
	if err != nil {
		t.Fatal(err)
	}
	pc := ratelimit.DefaultConfig()
	pc.Rate, pc.Burst = 1000, 100
	pacer, err := ratelimit.New(pc, linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Workers = 1
	r := &Runner{Config: cfg, Client: client, Pacer: pacer}
	got, _ := runAndCollect(t, r, "primary_user_id,secondary_user_id\nauth0|p1,github|s1\n")
	res, ok := got[2]
	if !ok {
		t.Fatalf("no result for line 2: %v", got)
	}
	return res
}

func TestRunTrustsA2xxStatus(t *testing.T) {
	created := func(body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(body))
		}
	}
	tests := []struct {
		name     string
		answer   func(w http.ResponseWriter, r *http.Request)
		holds    bool
		status   Status
		wantGets int32
		note     string
	}{
		{name: "201 invalid JSON", answer: created(`[{"provider":`), status: StatusLinked, note: "unusable"},
		{name: "201 oversized", answer: created("[" + strings.Repeat(" ", 5<<20) + "]"), status: StatusLinked, note: "unusable"},
		{name: "201 trickling", answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			rc := http.NewResponseController(w)
			_ = rc.Flush()
			for {
				if _, err := w.Write([]byte(" ")); err != nil || rc.Flush() != nil {
					return
				}
				select {
				case <-r.Context().Done():
					return
				case <-time.After(time.Second):
				}
			}
		}, status: StatusLinked, note: "unusable"},
		{name: "200 and the primary holds it", answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`[]`))
		}, holds: true, status: StatusLinked, wantGets: 1, note: "200"},
		{name: "204 and the primary holds it", answer: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}, holds: true, status: StatusLinked, wantGets: 1, note: "204"},
		{name: "204 and the primary does not hold it", answer: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}, status: StatusFailed, wantGets: 1, note: "does not hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &answerServer{answer: tt.answer, holds: tt.holds}
			start := time.Now()
			res := runAgainst(t, s, 1500*time.Millisecond)
			if n := s.posts.Load(); n != 1 {
				t.Errorf("%d POSTs, want exactly 1", n)
			}
			if n := s.gets.Load(); n != tt.wantGets {
				t.Errorf("%d GETs, want %d", n, tt.wantGets)
			}
			if res.Status != tt.status || res.Retryable {
				t.Errorf("result %s retryable=%v (%s), want %s and not retryable", res.Status, res.Retryable, res.Error, tt.status)
			}
			if !strings.Contains(res.Error, tt.note) {
				t.Errorf("error column %q, want a note with %q", res.Error, tt.note)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the row took %s: the body was not read within its own time", d)
			}
		})
	}
}

func TestRunRefusesHugeID(t *testing.T) {
	s := &answerServer{answer: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) }}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	base, err := linker.ParseDomain(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client, err := linker.NewClient(base, linker.StaticToken("eyJhbGciOiJub25lIn0.e30.c2ln"), linker.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	pacer, err := ratelimit.New(ratelimit.DefaultConfig(), linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf strings.Builder
	var mu sync.Mutex
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logBuf.Write(p) })), zap.DebugLevel)
	r := &Runner{Config: DefaultConfig(), Client: client, Pacer: pacer, Log: zap.New(core)}
	huge := "github|" + strings.Repeat("9", 512<<10) // under the line bound (a longer line is refused whole)
	got, _ := runAndCollect(t, r, "primary_user_id,secondary_user_id\nauth0|p1,"+huge+"\nauth0|p2,github|"+strings.Repeat("8", linker.MaxIDLen-len("github|"))+"\n")
	if res := got[2]; res.Status != StatusInvalid || !strings.Contains(res.Error, "secondary_user_id") {
		t.Errorf("line 2: %s %.100q, want invalid naming secondary_user_id", res.Status, res.Error)
	}
	if res := got[3]; res.Status != StatusLinked {
		t.Errorf("line 3 (an id of exactly %d bytes): %s %.100q, want linked", linker.MaxIDLen, res.Status, res.Error)
	}
	if n := s.posts.Load(); n != 1 {
		t.Errorf("%d POSTs, want 1 (line 3 only)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, line := range strings.Split(logBuf.String(), "\n") {
		if len(line) > 4096 {
			t.Errorf("a log line of %d bytes: %.200s", len(line), line)
		}
	}
	if !strings.Contains(logBuf.String(), "bytes)") {
		t.Errorf("log %.300s: want the cut id marked with its length", logBuf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
