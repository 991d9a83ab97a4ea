package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// simulation is the built-in simulated tenant of --simulate: a fake Auth0
// tenant served over HTTP on the loopback interface, seeded with every user
// the input names, with a rate limit and a few injected faults so that the
// whole pipeline (pacing, retries, verification) is exercised.
type simulation struct {
	*linkertest.Server
	ClientID, ClientSecret string
}

// Simulated tenant profile: an Enterprise-like bucket scaled down, and a few
// faults of each kind.
var simProfile = linkertest.Config{
	Seed:      1,
	RateLimit: linkertest.RateLimit{Burst: 20, Rate: 15},
	TokenTTL:  time.Hour,
	IdPTokens: true,
	Faults: linkertest.Faults{
		Latency:    20 * time.Millisecond,
		Jitter:     10 * time.Millisecond,
		Err5xx:     0.02,
		DropBefore: 0.01,
		DropAfter:  0.01,
	},
}

func startSimulation(open func() (io.ReadCloser, error), format batch.Format, log *zap.Logger) (*simulation, error) {
	cfg := simProfile
	cfg.ClientID = "sim-" + randomHex(8)
	cfg.ClientSecret = randomHex(24)
	srv := linkertest.NewServer(cfg)
	in, err := open()
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("open input: %w", err)
	}
	defer in.Close()
	rd, err := format.NewReader(in)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("read input: %w", err)
	}
	users := 0
	paired := map[string]bool{} // secondaries whose email is already set
	for {
		row, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			srv.Close()
			return nil, fmt.Errorf("read input: %w", err)
		}
		if row.Err != nil {
			continue
		}
		srv.Seed(row.Primary)
		users++
		if key := row.SecondaryKey(); key != "" {
			srv.Seed(key)
			users++
			if !paired[key] {
				paired[key] = true
				sameEmail(srv, row.Primary, key, row.Line)
			}
		}
	}
	log.Info("simulated tenant started", zap.String("url", srv.URL), zap.Int("users_seeded", users),
		zap.Int("burst", cfg.RateLimit.Burst), zap.Float64("rate", cfg.RateLimit.Rate))
	return &simulation{Server: srv, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret}, nil
}

// MarshalLogObject logs what the simulated tenant saw.
func (s *simulation) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	st := s.Stats()
	enc.AddInt("requests", st.Requests)
	enc.AddInt("links_applied", st.LinksApplied)
	enc.AddInt("double_links", st.DoubleLinks)
	enc.AddInt("rate_limited", st.RateLimited)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sameEmail gives the secondary the primary's email, as duplicate accounts
// of one person have; a few pairs, chosen by line, get a different or an
// unverified email instead, so that --verify has something to report.
func sameEmail(srv *linkertest.Server, primary, secondary string, line int) {
	p, ok1 := srv.User(primary)
	u, ok2 := srv.User(secondary)
	if !ok1 || !ok2 {
		return
	}
	switch {
	case line%11 == 6:
		return // keeps its own, different email
	case line%9 == 4:
		u.Email, u.EmailVerified = p.Email, false
	default:
		u.Email, u.EmailVerified = p.Email, true
	}
	srv.AddUser(u)
}
