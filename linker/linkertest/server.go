// Package linkertest runs a fake Auth0 tenant over real HTTP, for the tests
// of linkbatch and for its simulate mode.
//
// A [Server] answers the endpoints linkbatch uses: POST /oauth/token
// (client credentials grant), POST /api/v2/users/{id}/identities (link a user
// account), GET /api/v2/users/{id}, PATCH /api/v2/users/{id} (metadata, merged
// at the root level) and DELETE /api/v2/users/{id}/identities/{provider}/{user_id}
// (unlink; see metadata.go), the users' roles and organization
// memberships (see roles.go) and their permissions (see permissions.go).
// It validates requests as strictly as
// the Management API's OpenAPI schema, answers with the API's error bodies
// and x-ratelimit-* headers, enforces a token-bucket rate limit, and can
// inject faults (latency, 5xx answers, dropped connections, stalls) drawn
// from a seeded source.
//
// Like net/http/httptest, the server listens on a random loopback port and
// its URL field holds the base URL. With [Config.InMemory] it listens on no
// socket at all and is reachable only through [Server.Client]; that is the
// mode to use inside a testing/synctest bubble, where a goroutine blocked on
// a real socket would keep the fake clock from advancing.
//
// All methods of Server are safe for concurrent use. The package knows only
// the API as Auth0 documents it: nothing of linkbatch's client, rows or pacing.
package linkertest

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Config configures a Server. The zero value is a tenant with no users, no
// rate limit, no faults and no client able to get a token from
// /oauth/token (tokens can still be made with [Server.IssueToken]).
type Config struct {
	// Now is the server's clock, used for token expiry and the rate limit;
	// nil means time.Now. Waits (latency, stalls) always use real timers,
	// which testing/synctest makes fake.
	Now func() time.Time
	// Seed seeds the random source the faults are drawn from: two servers
	// with the same Seed and Faults given the same requests in the same
	// order inject the same faults.
	Seed int64
	// RateLimit is the token bucket shared by every /api/v2 request.
	RateLimit RateLimit
	// GlobalLimit is a second bucket, checked first and never announced
	// in headers (see global.go); the zero value means none.
	GlobalLimit RateLimit
	// ClientID and ClientSecret are the only credentials POST /oauth/token
	// accepts. When ClientID is empty every grant is refused.
	ClientID, ClientSecret string
	// TokenTTL is the lifetime of tokens issued by /oauth/token; zero or
	// negative means 24h.
	TokenTTL time.Duration
	// Faults are the faults injected from the start; see [Server.SetFaults].
	Faults Faults
	// IdPTokens makes every identity in an answer carry access_token,
	// refresh_token and access_token_secret values (all starting with
	// "idp-secret-"), as the real API does for a token with
	// read:user_idp_tokens.
	IdPTokens bool
	// InMemory serves over in-memory pipes instead of a loopback socket.
	// URL is then a placeholder ("http://linkertest.invalid") that only
	// the client returned by [Server.Client] can reach.
	InMemory bool
}

// Server is a fake Auth0 tenant serving HTTP. Create it with [NewServer] and
// stop it with [Server.Close]. Its methods are safe for concurrent use, also
// while requests are being served.
type Server struct {
	// URL is the base URL of the tenant, like "http://127.0.0.1:PORT",
	// with no trailing slash. The Management API audience is
	// URL + "/api/v2/".
	URL string

	now       func() time.Time
	audience  string
	clientID  string
	secret    string
	tokenTTL  time.Duration
	idpTokens bool

	ln        net.Listener
	mem       *memListener
	srv       *http.Server
	client    *http.Client
	transport *http.Transport
	ctx       context.Context
	cancel    context.CancelFunc
	serving   sync.WaitGroup

	lifeMu   sync.Mutex
	closed   bool
	inflight sync.WaitGroup

	mu       sync.Mutex // guards the tenant state below
	users    map[string]*User
	owner    map[identKey]string // identity -> id of the user holding it
	mainKey  map[string]identKey // every user id ever created -> its own identity
	tokens   map[string]token
	linkWith map[string]string // link_with JWT -> secondary user id
	grants   grants            // roles, organizations, role permissions; see roles.go

	bucket *bucket
	global *bucket // nil: no global limit
	faults *faultSource

	statsMu sync.Mutex
	stats   Stats
}

// NewServer starts a fake tenant configured by cfg and returns it. It panics
// if it cannot listen on the loopback interface, as httptest.NewServer does.
// The caller must call Close.
func NewServer(cfg Config) *Server {
	s := &Server{
		now:       cfg.Now,
		clientID:  cfg.ClientID,
		secret:    cfg.ClientSecret,
		tokenTTL:  cfg.TokenTTL,
		idpTokens: cfg.IdPTokens,
		users:     make(map[string]*User),
		owner:     make(map[identKey]string),
		mainKey:   make(map[string]identKey),
		tokens:    make(map[string]token),
		linkWith:  make(map[string]string),
		faults:    newFaultSource(cfg.Seed, cfg.Faults),
		stats:     Stats{ByStatus: map[int]int{}, PostsByPrimary: map[string]int{}},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.tokenTTL <= 0 {
		s.tokenTTL = 24 * time.Hour
	}
	s.bucket = newBucket(cfg.RateLimit, s.now())
	s.global = newGlobal(cfg.GlobalLimit, s.now())
	s.ctx, s.cancel = context.WithCancel(context.Background())

	s.transport = &http.Transport{
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
	}
	if cfg.InMemory {
		s.mem = newMemListener()
		s.ln = s.mem
		s.URL = "http://linkertest.invalid"
		s.transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return s.mem.dial(ctx)
		}
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(fmt.Sprintf("linkertest: listen on loopback: %v", err))
		}
		s.ln = ln
		s.URL = "http://" + ln.Addr().String()
		s.transport.DialContext = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	}
	s.audience = s.URL + "/api/v2/"
	s.client = &http.Client{Transport: s.transport}
	s.srv = &http.Server{
		Handler:     http.HandlerFunc(s.serveHTTP),
		BaseContext: func(net.Listener) context.Context { return s.ctx },
		ErrorLog:    log.New(io.Discard, "", 0),
	}
	s.serving.Go(func() { _ = s.srv.Serve(s.ln) })
	return s
}

// Close stops the server: it cancels the requests being served (a stalled
// or delayed request ends without applying anything), closes every
// connection and waits for all handlers and the serving goroutine to
// return. Close is idempotent.
func (s *Server) Close() {
	s.lifeMu.Lock()
	if s.closed {
		s.lifeMu.Unlock()
		return
	}
	s.closed = true
	s.lifeMu.Unlock()

	s.cancel()
	_ = s.srv.Close()
	s.inflight.Wait()
	s.serving.Wait()
	s.transport.CloseIdleConnections()
}

// Client returns an HTTP client configured to reach the server, in either
// mode. Its transport is closed by Close. It has no timeout of its own.
func (s *Server) Client() *http.Client { return s.client }

// SetFaults replaces the injected faults; requests already past their fault
// draw are not affected. Fractions are clamped to [0, 1].
func (s *Server) SetFaults(f Faults) { s.faults.set(f) }

// SetRateLimit replaces the rate limit. The tokens left in the bucket are
// kept (capped at the new burst); going from unlimited to limited starts
// with a full bucket.
func (s *Server) SetRateLimit(rl RateLimit) { s.bucket.set(rl, s.now()) }

// Stats counts what the server saw. Maps are snapshots owned by the caller.
type Stats struct {
	Requests      int // every HTTP request, any path
	TokenRequests int // requests to /oauth/token
	Posts         int // POST /api/v2/users/{id}/identities, rate limited ones included
	Gets          int // GET /api/v2/users/{id}, rate limited ones included
	RateLimited   int // 429 answers
	// ByStatus counts the answers written, by status code. Dropped
	// connections and requests abandoned by their client are not answers.
	ByStatus map[int]int
	// LinksApplied counts successful links.
	LinksApplied int
	// Relinks counts link requests for a secondary already linked into
	// that same primary (answered 409), as a retry after a lost answer
	// sends.
	Relinks int
	// DoubleLinks counts link requests for a secondary already linked into
	// another primary (answered 400): a correct tool sends none.
	DoubleLinks int
	// Fault counters.
	Injected5xx   int // 500/502/503 answers injected
	DroppedBefore int // connections closed before the request was handled
	DroppedAfter  int // connections closed after the request was handled
	Stalled       int // requests stalled by the Hang fault
	Abandoned     int // requests whose client went away during a delay or stall
	// PostsByPrimary counts link requests by primary user id.
	PostsByPrimary map[string]int
	// Patches and Unlinks count PATCH /api/v2/users/{id} and unlink
	// requests, rate limited ones included. MetadataWipes counts the
	// PATCHes applied with an empty user_metadata or app_metadata object,
	// which remove it: a merge should send none.
	Patches, Unlinks, MetadataWipes int
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.stats
	st.ByStatus = make(map[int]int, len(s.stats.ByStatus))
	for k, v := range s.stats.ByStatus {
		st.ByStatus[k] = v
	}
	st.PostsByPrimary = make(map[string]int, len(s.stats.PostsByPrimary))
	for k, v := range s.stats.PostsByPrimary {
		st.PostsByPrimary[k] = v
	}
	return st
}

func (s *Server) count(f func(*Stats)) {
	s.statsMu.Lock()
	f(&s.stats)
	s.statsMu.Unlock()
}

// begin registers a request being served; it reports false once the server
// is closing.
func (s *Server) begin() bool {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.begin() {
		hijackClose(w)
		return
	}
	defer s.inflight.Done()
	s.count(func(st *Stats) { st.Requests++ })

	path := r.URL.EscapedPath()
	switch {
	case path == "/oauth/token" || path == "/oauth/token/":
		s.count(func(st *Stats) { st.TokenRequests++ })
		s.serveToken(w, r)
	case strings.HasPrefix(path, "/api/v2/"):
		s.serveAPI(w, r, path)
	default:
		s.writeError(w, http.StatusNotFound, "not_found", "Not Found")
	}
}

// hijackClose closes the connection of w without answering.
func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}
