package linker_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/linker"
)

func TestParseUserID(t *testing.T) {
	tests := []struct {
		name         string
		id           string
		wantProvider string
		wantUserID   string
		wantErr      error
	}{
		{name: "database", id: "auth0|63d17c6b77d74b740960460a", wantProvider: "auth0", wantUserID: "63d17c6b77d74b740960460a"},
		{name: "social", id: "google-oauth2|123456789081523216417", wantProvider: "google-oauth2", wantUserID: "123456789081523216417"},
		{name: "enterprise keeps later bars", id: "samlp|acme|bob@acme.com", wantProvider: "samlp", wantUserID: "acme|bob@acme.com"},
		{name: "custom oauth2", id: "oauth2|paratext|WfCxeyQQi0", wantProvider: "oauth2", wantUserID: "paratext|WfCxeyQQi0"},
		{name: "unknown provider is not checked", id: "nosuch|x", wantProvider: "nosuch", wantUserID: "x"},
		{name: "slash and percent kept", id: "auth0|a/b%2F?c#d e", wantProvider: "auth0", wantUserID: "a/b%2F?c#d e"},
		{name: "empty", id: "", wantErr: linker.ErrEmptyID},
		{name: "blank", id: "  \t", wantErr: linker.ErrEmptyID},
		{name: "no bar", id: "63d17c6b77d74b740960460a", wantErr: linker.ErrNoProvider},
		{name: "empty provider", id: "|abc", wantErr: linker.ErrNoProvider},
		{name: "nothing after provider", id: "auth0|", wantErr: linker.ErrEmptyIDPart},
		{name: "newline", id: "auth0|abc\n", wantErr: linker.ErrControlChars},
		{name: "NUL", id: "auth0|a\x00b", wantErr: linker.ErrControlChars},
		{name: "C1 control", id: "auth0|a\u0085b", wantErr: linker.ErrControlChars},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			provider, userID, err := linker.ParseUserID(tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseUserID(%q) error = %v, want %v", tt.id, err, tt.wantErr)
			}
			if provider != tt.wantProvider || userID != tt.wantUserID {
				t.Errorf("ParseUserID(%q) = %q, %q; want %q, %q", tt.id, provider, userID, tt.wantProvider, tt.wantUserID)
			}
		})
	}
}

func TestCheckID(t *testing.T) {
	tests := []struct {
		id   string
		want error
	}{
		{"auth0|abc", nil},
		{"no-bar-is-fine-here", nil},
		{"ünïcødé|ok", nil},
		{"", linker.ErrEmptyID},
		{" ", linker.ErrEmptyID},
		{"\u00a0", linker.ErrEmptyID},
		{"a\tb", linker.ErrControlChars},
		{"a\rb", linker.ErrControlChars},
		{"a\x7fb", linker.ErrControlChars},
	}
	for _, tt := range tests {
		if got := linker.CheckID(tt.id); !errors.Is(got, tt.want) {
			t.Errorf("CheckID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestValidProvider(t *testing.T) {
	tests := []struct {
		p    string
		want bool
	}{
		{"auth0", true},
		{"google-oauth2", true},
		{"samlp", true},
		{"waad", true},
		{"yandex", true},
		{"ad", true},
		{"", false},
		{"Auth0", false},
		{"auth0 ", false},
		{"aol", false}, // dropped from the current enum
		{"google", false},
	}
	for _, tt := range tests {
		if got := linker.ValidProvider(tt.p); got != tt.want {
			t.Errorf("ValidProvider(%q) = %v, want %v", tt.p, got, tt.want)
		}
	}
	// Every provider of the list, and nothing a letter away from one.
	for _, p := range linker.Providers() {
		for _, q := range []string{p, p[1:], p[:len(p)-1], p + "x", strings.ToUpper(p[:1]) + p[1:]} {
			if got, want := linker.ValidProvider(q), slices.Contains(linker.Providers(), q); got != want {
				t.Errorf("ValidProvider(%q) = %v, want %v", q, got, want)
			}
		}
	}
}

func TestProviders(t *testing.T) {
	ps := linker.Providers()
	if len(ps) != 55 {
		t.Errorf("len(Providers()) = %d, want the 55 values of the enum", len(ps))
	}
	if !slices.IsSorted(ps) {
		t.Error("Providers() is not sorted")
	}
	for _, p := range ps {
		if !linker.ValidProvider(p) {
			t.Errorf("ValidProvider(%q) = false for a listed provider", p)
		}
	}
	ps[0] = "changed"
	if linker.Providers()[0] == "changed" {
		t.Error("Providers() returned the package's own slice")
	}
}

func TestValidConnectionID(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"con_ftSSLHb0O7rcUGmF", true},
		{"con_0123456789abcdef", true},
		{"con_ftSSLHb0O7rcUGm", false},   // 15
		{"con_ftSSLHb0O7rcUGmFx", false}, // 17
		{"con_ftSSLHb0O7rcUG-F", false},
		{"CON_ftSSLHb0O7rcUGmF", false},
		{"ftSSLHb0O7rcUGmFabcd", false},
		{"con_ftSSLHb0O7rcUGmF\n", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := linker.ValidConnectionID(tt.s); got != tt.want {
			t.Errorf("ValidConnectionID(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func FuzzParseUserID(f *testing.F) {
	for _, seed := range []string{
		"auth0|63d17c6b77d74b740960460a", "samlp|acme|bob@acme.com", "|", "a|", "|b", "",
		"no-bar", "x|y\x00", "google-oauth2|1|2|3", "\xff|\xfe", " | ",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		provider, userID, err := linker.ParseUserID(id)
		if err != nil {
			if provider != "" || userID != "" {
				t.Fatalf("ParseUserID(%q) = %q, %q with error %v", id, provider, userID, err)
			}
			return
		}
		if provider+"|"+userID != id {
			t.Fatalf("ParseUserID(%q) = %q, %q: does not rebuild the id", id, provider, userID)
		}
		if provider == "" || userID == "" {
			t.Fatalf("ParseUserID(%q) = %q, %q: empty part", id, provider, userID)
		}
		if strings.Contains(provider, "|") {
			t.Fatalf("ParseUserID(%q): provider %q contains '|'", id, provider)
		}
		if linker.CheckID(id) != nil {
			t.Fatalf("ParseUserID(%q) accepted an id CheckID rejects", id)
		}
	})
}
