package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// TestRunStopsWhenEveryRowFailsAlike: a tenant address or a token that fails
// every row stops the run after a handful of rows, with exit 3 and a hint
// naming what to check; the rows tried are failed and retryable, the others
// have no result, and a resume with the mistake fixed links every pair once.
func TestRunStopsWhenEveryRowFailsAlike(t *testing.T) {
	pairs := clitest.GenPairs("alike", 200)
	srv, tok := clitest.NewTenant(t, linkertest.Config{}, pairs)
	untrusted := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(untrusted.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()

	const workers = 2
	tests := []struct {
		name, domain, token string
		hint                string
	}{
		{"connection refused", "http://" + closed, "header.payload.signature", "check AUTH0_DOMAIN (--domain): nothing accepts connections"},
		{"host does not resolve", "https://nonexistent.invalid", "header.payload.signature", "check AUTH0_DOMAIN (--domain): its host name does not resolve"},
		{"untrusted certificate", untrusted.URL, "header.payload.signature", "check AUTH0_DOMAIN (--domain): its TLS certificate is not trusted"},
		{"token not a JWT", srv.URL, "not-a-jwt-but-long-enough", "check AUTH0_TOKEN (--token): it is not a JWT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := writeInput(t, pairs)
			outPath := filepath.Join(t.TempDir(), "results.csv")
			args := []string{"run", "--in", in, "--out", outPath, "--rate", "100", "--burst", "10", "--workers", "2", "--max-retries", "1"}
			out := runLinkbatch(t, invocation{args: args, env: []string{"AUTH0_DOMAIN=" + tt.domain, "AUTH0_TOKEN=" + tt.token}})
			if out.code != exitAborted {
				t.Fatalf("exit %d, want %d\n%s", out.code, exitAborted, lastLines(out.stderr, 5))
			}
			if !strings.Contains(out.stderr, "rows in a row failed alike") || !strings.Contains(out.stderr, tt.hint) {
				t.Errorf("stderr lacks the cause or the hint %q:\n%s", tt.hint, lastLines(out.stderr, 3))
			}
			// The rows that stopped the run, and those in flight then.
			if n := len(out.results); n < 5 || n > 5+workers {
				t.Errorf("%d result rows, want 5 to %d", n, 5+workers)
			}
			for line, r := range out.results {
				if r.Status != batch.StatusFailed || !r.Retryable {
					t.Errorf("line %d: %s retryable=%v (%s), want failed and retryable", line, r.Status, r.Retryable, r.Error)
				}
			}
			if got := summaryInt(t, out.stderr, "remaining"); got != len(pairs)-len(out.results) {
				t.Errorf("remaining = %d, want %d", got, len(pairs)-len(out.results))
			}
			if tt.token == "not-a-jwt-but-long-enough" {
				resumeToEnd(t, srv, tok, args, pairs)
			}
		})
	}
}
