package linker_test

import (
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/linker"
)

func TestParseDomain(t *testing.T) {
	tests := []struct {
		in      string
		want    string // empty: an error is expected
		wantErr string // part of the error text
	}{
		{in: "acme.eu.auth0.com", want: "https://acme.eu.auth0.com"},
		{in: "  acme.eu.auth0.com\n", want: "https://acme.eu.auth0.com"},
		{in: "acme.eu.auth0.com/", want: "https://acme.eu.auth0.com"},
		{in: "Acme.EU.auth0.com:8443", want: "https://acme.eu.auth0.com:8443"},
		{in: "https://acme.auth0.com", want: "https://acme.auth0.com"},
		{in: "https://acme.auth0.com/", want: "https://acme.auth0.com"},
		{in: "HTTPS://login.example.org:443/", want: "https://login.example.org:443"},
		{in: "localhost:8080", want: "https://localhost:8080"},
		{in: "http://localhost:8080", want: "http://localhost:8080"},
		{in: "http://LOCALHOST", want: "http://localhost"},
		{in: "http://127.0.0.1:3000/", want: "http://127.0.0.1:3000"},
		{in: "http://127.9.8.7", want: "http://127.9.8.7"},
		{in: "http://[::1]:9000", want: "http://[::1]:9000"},
		{in: "https://[2001:db8::1]", want: "https://[2001:db8::1]"},

		{in: "", wantErr: "empty"},
		{in: "   ", wantErr: "empty"},
		{in: "http://acme.auth0.com", wantErr: "http is only allowed for a loopback host"},
		{in: "http://10.0.0.1:8080", wantErr: "loopback"},
		{in: "http://localhost.evil.com", wantErr: "loopback"},
		{in: "http://128.0.0.1", wantErr: "loopback"},
		{in: "ftp://acme.auth0.com", wantErr: `scheme "ftp"`},
		{in: "https://user:hunter2@acme.auth0.com", wantErr: "user info"},
		{in: "bob@acme.auth0.com", wantErr: "user info"},
		{in: "https://acme.auth0.com?x=1", wantErr: "query"},
		{in: "acme.auth0.com?", wantErr: "query"},
		{in: "https://acme.auth0.com#top", wantErr: "fragment"},
		{in: "https://acme.auth0.com/api/v2", wantErr: "path"},
		{in: "acme.auth0.com/api/v2/", wantErr: "path"},
		{in: "https://", wantErr: "no host"},
		{in: ":443", wantErr: "no host"},
		{in: "acme.auth0.com:", wantErr: "empty port"},
		{in: "acme.auth0.com:http", wantErr: "port"},
		{in: "http:acme.auth0.com", wantErr: "port"},
		{in: "acme auth0.com", wantErr: "acme auth0.com"},
		{in: "-acme.auth0.com", wantErr: "not a valid host"},
		{in: "acme..auth0.com", wantErr: "not a valid host"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := linker.ParseDomain(tt.in)
			if tt.want != "" {
				if err != nil {
					t.Fatalf("ParseDomain(%q) error: %v", tt.in, err)
				}
				if u.String() != tt.want {
					t.Errorf("ParseDomain(%q) = %q, want %q", tt.in, u, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseDomain(%q) = %q, want an error", tt.in, u)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDomain(%q) error = %q, want it to mention %q", tt.in, err, tt.wantErr)
			}
			if v := strings.TrimSpace(tt.in); v != "" && !strings.Contains(tt.in, "hunter2") && !strings.Contains(err.Error(), v) {
				t.Errorf("ParseDomain(%q) error = %q, want it to name the value", tt.in, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("ParseDomain error reveals the password: %q", err)
			}
		})
	}
}
