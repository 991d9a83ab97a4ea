package linker_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// closedPort returns a loopback address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestFatalForAll links once through a real client against each tenant
// address or token that fails every row, and against ones that fail one
// row only.
func TestFatalForAll(t *testing.T) {
	tenant := linkertest.NewServer(linkertest.Config{})
	t.Cleanup(tenant.Close)
	tenant.Seed("auth0|p", "github|s")
	untrusted := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(untrusted.Close)
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)

	tests := []struct {
		name, domain, token string
		want                string
	}{
		{"connection refused", "http://" + closedPort(t), "a.b.c", linker.FatalRefused},
		{"host does not resolve", "https://nonexistent.invalid", "a.b.c", linker.FatalDNS},
		{"untrusted certificate", untrusted.URL, "a.b.c", linker.FatalTLS},
		{"https to a plain http server", "https://" + plain.Listener.Addr().String(), "a.b.c", linker.FatalTLS},
		{"token not a JWT", tenant.URL, "not-a-jwt", linker.FatalTokenFormat},
		{"unknown JWT (401, handled as credentials)", tenant.URL, "eyJa.eyJb.c", ""},
		{"row's own 404", tenant.URL, tenant.IssueToken(time.Hour), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := linker.ParseDomain(tt.domain)
			if err != nil {
				t.Fatal(err)
			}
			c, err := linker.NewClient(u, linker.StaticToken(tt.token), linker.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = c.Link(t.Context(), linker.LinkRequest{PrimaryID: "auth0|nobody", Provider: "github", UserID: "s"})
			if err == nil {
				t.Fatal("Link() succeeded")
			}
			if got := linker.FatalForAll(err); got != tt.want {
				t.Errorf("FatalForAll(%v) = %q, want %q", err, got, tt.want)
			}
			if got := linker.FatalForAll(fmt.Errorf("wrapped: %w", err)); got != tt.want {
				t.Errorf("FatalForAll(wrapped) = %q, want %q", got, tt.want)
			}
		})
	}
	if got := linker.FatalForAll(nil); got != "" {
		t.Errorf("FatalForAll(nil) = %q", got)
	}
	if got := linker.FatalForAll(errors.New("boom")); got != "" {
		t.Errorf("FatalForAll(plain error) = %q", got)
	}
}
