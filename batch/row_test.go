package batch

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/linker"
)

const (
	testJWT  = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJnaXRodWJ8MSJ9.c2lnbmF0dXJlLXNlY3JldA"
	testConn = "con_Ab12Cd34Ef56Gh78"
)

func TestRowValidate(t *testing.T) {
	tests := []struct {
		name  string
		row   Row
		field string // "" when the row is valid
		msg   string // substring of the error message
	}{
		{"full secondary id", Row{Primary: "auth0|1", Secondary: "google-oauth2|2"}, "", ""},
		{"samlp id with several bars", Row{Primary: "auth0|1", Secondary: "samlp|acme|bob@acme.com"}, "", ""},
		{"bare id with provider", Row{Primary: "auth0|1", Secondary: "2", SecondaryProvider: "google-oauth2"}, "", ""},
		{"full id with provider", Row{Primary: "auth0|1", Secondary: "google-oauth2|2", SecondaryProvider: "google-oauth2"}, "", ""},
		{"connection id", Row{Primary: "auth0|1", Secondary: "auth0|2", ConnectionID: testConn}, "", ""},
		{"link_with alone", Row{Primary: "auth0|1", LinkWith: testJWT}, "", ""},
		{"primary of unknown provider", Row{Primary: "oauth2|discord|1", Secondary: "auth0|2"}, "", ""},
		{"unicode id", Row{Primary: "auth0|1", Secondary: "samlp|acme|zoë@acme.com"}, "", ""},

		{"blank primary", Row{Primary: "  ", Secondary: "auth0|2"}, colPrimary, "is empty"},
		{"primary without provider", Row{Primary: "64b0c1f2", Secondary: "auth0|2"}, colPrimary, "no provider prefix"},
		{"primary with empty provider", Row{Primary: "|64b0", Secondary: "auth0|2"}, colPrimary, "no provider prefix"},
		{"primary with nothing after provider", Row{Primary: "auth0|", Secondary: "auth0|2"}, colPrimary, "nothing after the provider"},
		{"primary with control character", Row{Primary: "auth0|1\x00", Secondary: "auth0|2"}, colPrimary, "control characters"},
		{"primary with C1 control character", Row{Primary: "auth0|1\u0085", Secondary: "auth0|2"}, colPrimary, "control characters"},
		{"primary with zero-width space", Row{Primary: "auth0|1\u200b", Secondary: "auth0|2"}, colPrimary, "invisible formatting"},
		{"primary with invalid UTF-8", Row{Primary: "auth0|1\xff", Secondary: "auth0|2"}, colPrimary, "UTF-8"},
		{"primary with trailing space", Row{Primary: "auth0|1 ", Secondary: "auth0|2"}, colPrimary, "leading or trailing spaces"},

		{"blank secondary", Row{Primary: "auth0|1"}, colSecondary, "is empty"},
		{"secondary without provider", Row{Primary: "auth0|1", Secondary: "107740"}, colSecondary, "no provider prefix"},
		{"secondary provider not in enum", Row{Primary: "auth0|1", Secondary: "foo|2"}, colSecondary, `provider "foo" is not a known identity provider`},
		{"secondary provider in wrong case", Row{Primary: "auth0|1", Secondary: "GitHub|2"}, colSecondary, `provider "GitHub"`},
		{"secondary with control character", Row{Primary: "auth0|1", Secondary: "auth0|2\t"}, colSecondary, "control characters"},
		{"secondary with leading space", Row{Primary: "auth0|1", Secondary: " auth0|2"}, colSecondary, "leading or trailing spaces"},
		{"secondary equal to primary", Row{Primary: "auth0|1", Secondary: "auth0|1"}, colSecondary, "is the primary itself"},
		{"bare secondary equal to primary", Row{Primary: "auth0|1", Secondary: "1", SecondaryProvider: "auth0"}, colSecondary, "is the primary itself"},

		{"secondary_provider not in enum", Row{Primary: "auth0|1", Secondary: "2", SecondaryProvider: "foo"}, colSecondaryProvider, `provider "foo" is not a known identity provider`},
		{"secondary_provider with control character", Row{Primary: "auth0|1", Secondary: "2", SecondaryProvider: "github\n"}, colSecondaryProvider, `"github\n"`},
		{"secondary_provider with blank secondary", Row{Primary: "auth0|1", SecondaryProvider: "github"}, colSecondary, "is empty"},
		{"secondary_provider with nothing after prefix", Row{Primary: "auth0|1", Secondary: "github|", SecondaryProvider: "github"}, colSecondary, "nothing after the provider"},

		{"connection id too short", Row{Primary: "auth0|1", Secondary: "auth0|2", ConnectionID: "con_123"}, colConnectionID, `"con_123" is not a connection id`},
		{"connection id with wrong prefix", Row{Primary: "auth0|1", Secondary: "auth0|2", ConnectionID: "abc_Ab12Cd34Ef56Gh78"}, colConnectionID, "is not a connection id"},
		{"connection id with symbol", Row{Primary: "auth0|1", Secondary: "auth0|2", ConnectionID: "con_Ab12Cd34Ef56Gh7!"}, colConnectionID, "is not a connection id"},

		{"link_with with secondary label", Row{Primary: "auth0|1", Secondary: "github|2", LinkWith: testJWT}, colSecondary, "must be empty when link_with is given"},
		{"link_with with secondary_provider", Row{Primary: "auth0|1", SecondaryProvider: "github", LinkWith: testJWT}, colSecondaryProvider, "must be empty when link_with is given"},
		{"link_with with connection id", Row{Primary: "auth0|1", ConnectionID: testConn, LinkWith: testJWT}, colConnectionID, "must be empty when link_with is given"},
		{"link_with not a JWT", Row{Primary: "auth0|1", LinkWith: "not-a-token"}, colLinkWith, "is not a JWT"},
		{"link_with with empty part", Row{Primary: "auth0|1", LinkWith: "a..c"}, colLinkWith, "is not a JWT"},
		{"link_with with space", Row{Primary: "auth0|1", LinkWith: testJWT + " "}, colLinkWith, "is not a JWT"},
		{"link_with with bad primary", Row{Primary: "nobar", LinkWith: testJWT}, colPrimary, "no provider prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.row.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v (%T), want a *FieldError", err, err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Err.Error(), tt.msg) {
				t.Errorf("Validate() = %q, want field %s and a message containing %q", err, tt.field, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("Error() = %q, want it to start with %q", err, tt.field+": ")
			}
			if tt.row.LinkWith != "" && strings.Contains(err.Error(), tt.row.LinkWith) {
				t.Errorf("Error() = %q contains the link_with JWT", err)
			}
		})
	}
}

func TestFieldErrorFormat(t *testing.T) {
	err := Row{Primary: "auth0|1", Secondary: "foo|2"}.Validate()
	want := `secondary_user_id: provider "foo" is not a known identity provider`
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %s", err, want)
	}
}

func TestFieldErrorUnwrap(t *testing.T) {
	tests := []struct {
		name string
		row  Row
		want error
	}{
		{"empty primary", Row{Primary: "", Secondary: "github|2"}, linker.ErrEmptyID},
		{"primary without provider", Row{Primary: "nobar", Secondary: "github|2"}, linker.ErrNoProvider},
		{"empty identity user_id", Row{Primary: "auth0|1", Secondary: "github|", SecondaryProvider: "github"}, linker.ErrEmptyIDPart},
		{"control characters", Row{Primary: "auth0|1", Secondary: "github|2\x01"}, linker.ErrControlChars},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.row.Validate()
			if !errors.Is(err, tt.want) {
				t.Errorf("Validate() = %v, want it to match %v", err, tt.want)
			}
			if err := tt.row.Check().Err; !errors.Is(err, tt.want) {
				t.Errorf("Check().Err = %v, want it to match %v", err, tt.want)
			}
		})
	}
}

func TestRowCheckCarriesRequest(t *testing.T) {
	row := Row{Line: 2, Primary: "auth0|1", Secondary: "github|2"}.Check()
	// A checked row is not validated again: its request is the one Check
	// built, whatever happens to its fields afterwards.
	row.Secondary = "not valid"
	req, err := row.Request()
	if err != nil || req.Provider != "github" || req.UserID != "2" {
		t.Errorf("Request() = %+v, %v; want the request built by Check", req, err)
	}
	bad := Row{Line: 3, Primary: "auth0|1", Secondary: "auth0|1"}.Check()
	if bad.Err == nil {
		t.Fatal("Check() of a row naming the primary twice: no Err")
	}
	if _, err := bad.Request(); err != bad.Err {
		t.Errorf("Request() = %v, want the row's Err %v", err, bad.Err)
	}
}

func TestRowRequest(t *testing.T) {
	tests := []struct {
		name string
		row  Row
		want linker.LinkRequest
		key  string
	}{
		{
			name: "full id",
			row:  Row{Primary: "auth0|1", Secondary: "google-oauth2|107740"},
			want: linker.LinkRequest{PrimaryID: "auth0|1", Provider: "google-oauth2", UserID: "107740"},
			key:  "google-oauth2|107740",
		},
		{
			name: "samlp id keeps every bar after the first",
			row:  Row{Primary: "auth0|1", Secondary: "samlp|acme|bob@acme.com"},
			want: linker.LinkRequest{PrimaryID: "auth0|1", Provider: "samlp", UserID: "acme|bob@acme.com"},
			key:  "samlp|acme|bob@acme.com",
		},
		{
			name: "bare id with secondary_provider",
			row:  Row{Primary: "auth0|1", Secondary: "acme|bob@acme.com", SecondaryProvider: "samlp"},
			want: linker.LinkRequest{PrimaryID: "auth0|1", Provider: "samlp", UserID: "acme|bob@acme.com"},
			key:  "samlp|acme|bob@acme.com",
		},
		{
			name: "provider prefix dropped once",
			row:  Row{Primary: "auth0|1", Secondary: "samlp|samlp|x", SecondaryProvider: "samlp"},
			want: linker.LinkRequest{PrimaryID: "auth0|1", Provider: "samlp", UserID: "samlp|x"},
			key:  "samlp|samlp|x",
		},
		{
			name: "another provider's prefix is part of the bare id",
			row:  Row{Primary: "auth0|1", Secondary: "github|5", SecondaryProvider: "oauth2"},
			want: linker.LinkRequest{PrimaryID: "auth0|1", Provider: "oauth2", UserID: "github|5"},
			key:  "oauth2|github|5",
		},
		{
			name: "provider name without bar is not a prefix",
			row:  Row{Primary: "auth0|1", Secondary: "github5", SecondaryProvider: "github"},
			want: linker.LinkRequest{PrimaryID: "auth0|1", Provider: "github", UserID: "github5"},
			key:  "github|github5",
		},
		{
			name: "connection id",
			row:  Row{Primary: "auth0|1", Secondary: "auth0|2", ConnectionID: testConn},
			want: linker.LinkRequest{PrimaryID: "auth0|1", Provider: "auth0", UserID: "2", ConnectionID: testConn},
			key:  "auth0|2",
		},
		{
			name: "link_with",
			row:  Row{Primary: "auth0|1", LinkWith: testJWT},
			want: linker.LinkRequest{PrimaryID: "auth0|1", LinkWith: testJWT},
			key:  "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.row.Request()
			if err != nil {
				t.Fatalf("Request() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("Request() = %+v, want %+v", got, tt.want)
			}
			if k := tt.row.SecondaryKey(); k != tt.key {
				t.Errorf("SecondaryKey() = %q, want %q", k, tt.key)
			}
		})
	}
}

func TestRowRequestInvalid(t *testing.T) {
	row := Row{Primary: "auth0|1", Secondary: "auth0|1"}
	got, err := row.Request()
	if err == nil || err.Error() != row.Validate().Error() {
		t.Errorf("Request() error = %v, want the Validate error %v", err, row.Validate())
	}
	if got != (linker.LinkRequest{}) {
		t.Errorf("Request() = %+v, want the zero request", got)
	}
}

func TestRowStringHidesLinkWith(t *testing.T) {
	tests := []struct {
		name string
		row  Row
		want string
	}{
		{"secondary", Row{Line: 2, Primary: "auth0|1", Secondary: "2", SecondaryProvider: "github", ConnectionID: testConn}, "line 2: auth0|1 <- github|2 via " + testConn},
		{"link_with", Row{Line: 3, Primary: "auth0|1", LinkWith: testJWT}, "line 3: auth0|1 <- link_with JWT"},
		{"invalid link_with row", Row{Line: 4, Primary: "auth0|1", Secondary: "github|2", LinkWith: testJWT}, "line 4: auth0|1 <- link_with JWT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.row.Err = tt.row.Validate()
			if got := tt.row.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
				if got := fmt.Sprintf(verb, tt.row); strings.Contains(got, "eyJ") {
					t.Errorf("Sprintf(%s) = %q shows the JWT", verb, got)
				}
			}
		})
	}
}

func FuzzRowValidate(f *testing.F) {
	f.Add("auth0|1", "google-oauth2|2", "", "", "")
	f.Add("auth0|1", "acme|bob", "samlp", testConn, "")
	f.Add("auth0|1", "", "", "", testJWT)
	f.Add("auth0|1", "auth0|1", "", "", "")
	f.Add("x", "github|", "github", "con_", "a.b.c")
	f.Add("00|0", "", "", "0", "a")
	f.Fuzz(func(t *testing.T, primary, secondary, provider, conn, linkWith string) {
		row := Row{Primary: primary, Secondary: secondary, SecondaryProvider: provider, ConnectionID: conn, LinkWith: linkWith}
		err := row.Validate()
		req, reqErr := row.Request()
		if (err == nil) != (reqErr == nil) {
			t.Fatalf("Validate() = %v but Request() error = %v", err, reqErr)
		}
		checkLinkWithHidden(t, row, err)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %T, want *FieldError", err)
			}
			switch fe.Field {
			case colPrimary, colSecondary, colSecondaryProvider, colConnectionID, colLinkWith:
			default:
				t.Fatalf("Validate() names field %q", fe.Field)
			}
			return
		}
		if _, _, err := linker.ParseUserID(req.PrimaryID); err != nil || req.PrimaryID != primary {
			t.Fatalf("valid row has primary %q: %v", req.PrimaryID, err)
		}
		if req.LinkWith != "" {
			if req.Provider != "" || req.UserID != "" || req.ConnectionID != "" || row.SecondaryKey() != "" {
				t.Fatalf("link_with request %+v names a secondary", req)
			}
			return
		}
		if !linker.ValidProvider(req.Provider) || linker.CheckID(req.UserID) != nil {
			t.Fatalf("valid row gives request %+v", req)
		}
		if req.ConnectionID != "" && !linker.ValidConnectionID(req.ConnectionID) {
			t.Fatalf("valid row gives connection id %q", req.ConnectionID)
		}
		key := row.SecondaryKey()
		if key != req.Provider+"|"+req.UserID || key == primary {
			t.Fatalf("SecondaryKey() = %q for request %+v", key, req)
		}
	})
}

// checkLinkWithHidden checks that row's String and its error err (from
// Validate, or nil) stay the same when link_with is replaced by another
// value of the same shape: they cannot show it.
func checkLinkWithHidden(t *testing.T, row Row, err error) {
	t.Helper()
	if row.LinkWith == "" {
		return
	}
	other := row
	other.LinkWith = "x"
	if looksLikeJWT(row.LinkWith) {
		other.LinkWith = testJWT
	}
	other.Err = other.Validate()
	if row.String() != other.String() {
		t.Fatalf("String() = %q depends on link_with", row.String())
	}
	if fmt.Sprint(err) != fmt.Sprint(other.Err) {
		t.Fatalf("error %q depends on link_with (%q with another token)", err, other.Err)
	}
}

// TestPrintableASCII8 checks the 8-byte test of checkText against the
// byte one, for every byte at every place of a word of letters.
func TestPrintableASCII8(t *testing.T) {
	for c := range 256 {
		for at := range 8 {
			b := []byte("user|abc")
			b[at] = byte(c)
			want := byte(c) == ' ' || printableASCII(byte(c))
			if got := printableASCII8(string(b)); got != want {
				t.Fatalf("byte %#x at %d: printableASCII8 = %v, want %v", c, at, got, want)
			}
		}
	}
}
