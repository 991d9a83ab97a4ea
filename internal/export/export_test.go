package export

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func readAll(t *testing.T, data []byte) ([]User, []*LineError) {
	t.Helper()
	rd, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	var users []User
	var bad []*LineError
	for {
		u, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return users, bad
		}
		var le *LineError
		if errors.As(err, &le) {
			bad = append(bad, le)
			continue
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		users = append(users, u)
	}
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseLine(t *testing.T) {
	created := time.Date(2020, 1, 2, 3, 4, 5, 6000000, time.UTC)
	tests := []struct {
		name      string
		line      string
		want      User
		wantField string // of the *LineError; "-" for a line-wide error
	}{
		{
			name: "full",
			line: `{"user_id":"auth0|a1","email":"A@x.io","email_verified":true,"created_at":"2020-01-02T03:04:05.006Z","logins_count":7,"identities":[{"provider":"auth0","user_id":"a1","connection":"Username-Password-Authentication","isSocial":false},{"provider":"google-oauth2","user_id":1077,"connection":"google-oauth2"}],"user_metadata":{"x":1}}`,
			want: User{UserID: "auth0|a1", Email: "A@x.io", EmailVerified: true, CreatedAt: created, LoginsCount: 7,
				Identities: []Identity{{"auth0", "a1", "Username-Password-Authentication"}, {"google-oauth2", "1077", "google-oauth2"}}},
		},
		{
			name: "no identities: own identity from user_id",
			line: `{"user_id":"samlp|acme|bob@acme.com","email":"bob@acme.com"}`,
			want: User{UserID: "samlp|acme|bob@acme.com", Email: "bob@acme.com", Identities: []Identity{{"samlp", "acme|bob@acme.com", ""}}},
		},
		{name: "not JSON", line: `{"user_id":`, wantField: "-"},
		{name: "an array", line: `[1,2]`, wantField: "-"},
		{name: "no user_id", line: `{"email":"a@b.c"}`, wantField: "user_id"},
		{name: "user_id a float", line: `{"user_id":1.5}`, wantField: "-"},
		{name: "email_verified a string", line: `{"user_id":"auth0|1","email_verified":"yes"}`, wantField: "email_verified"},
		{name: "bad created_at", line: `{"user_id":"auth0|1","created_at":"yesterday"}`, wantField: "created_at"},
		{name: "negative logins", line: `{"user_id":"auth0|1","logins_count":-1}`, wantField: "logins_count"},
		{name: "identity without user_id", line: `{"user_id":"auth0|1","identities":[{"provider":"auth0"}]}`, wantField: "identities[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLine([]byte(tt.line))
			if tt.wantField != "" {
				var le *LineError
				if !errors.As(err, &le) {
					t.Fatalf("err = %v, want a *LineError", err)
				}
				if f := le.Field; (tt.wantField == "-" && f != "" && f != "user_id") || (tt.wantField != "-" && f != tt.wantField) {
					t.Errorf("field = %q, want %q (err %v)", f, tt.wantField, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

const ndjsonSample = `{"user_id":"auth0|a1","email":"a@x.io","email_verified":true,"created_at":"2020-01-01T00:00:00Z"}

{"user_id":"google-oauth2|9","email":" A@X.io ","email_verified":false}
{broken
{"user_id":"github|7","logins_count":3}
`

// csvSample is the same users in the CSV form of an export: strings quoted
// and prefixed with a single quote, booleans and numbers bare.
const csvSample = `"'user_id","'email","'email_verified","'created_at","'logins_count","'identities[0].connection"
"'auth0|a1","'a@x.io",true,"'2020-01-01T00:00:00Z",,"'Username-Password-Authentication"
"'google-oauth2|9","' A@X.io ",false,,,"'google-oauth2"
"'bad","'x",maybe,,,
"'github|7",,,,3,"'github"
`

func TestReaderForms(t *testing.T) {
	jan := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	wantIDs := []string{"auth0|a1", "google-oauth2|9", "github|7"}
	for _, tt := range []struct {
		name     string
		data     []byte
		format   Format
		badLine  int
		badField string
	}{
		{"ndjson", []byte(ndjsonSample), NDJSON, 4, ""},
		{"ndjson gzip", gz(t, []byte(ndjsonSample)), NDJSON, 4, ""},
		{"csv", []byte(csvSample), CSV, 4, "email_verified"},
		{"csv gzip with BOM", gz(t, []byte("\ufeff"+csvSample)), CSV, 4, "email_verified"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rd, err := NewReader(bytes.NewReader(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if rd.Format() != tt.format {
				t.Errorf("format = %v, want %v", rd.Format(), tt.format)
			}
			users, bad := readAll(t, tt.data)
			var ids []string
			for _, u := range users {
				ids = append(ids, u.UserID)
			}
			if !reflect.DeepEqual(ids, wantIDs) {
				t.Fatalf("users = %v, want %v", ids, wantIDs)
			}
			if len(bad) != 1 || bad[0].Line != tt.badLine || bad[0].Field != tt.badField {
				t.Errorf("bad lines = %v, want one at line %d field %q", bad, tt.badLine, tt.badField)
			}
			if u := users[0]; u.Email != "a@x.io" || !u.EmailVerified || !u.CreatedAt.Equal(jan) || u.Identities[0].FullID() != "auth0|a1" {
				t.Errorf("first user = %+v", u)
			}
			if u := users[1]; u.Email != " A@X.io " || u.EmailVerified || u.Line != 3 {
				t.Errorf("second user = %+v (want the email kept as written, unverified, line 3)", u)
			}
			if u := users[2]; u.LoginsCount != 3 || u.Email != "" {
				t.Errorf("third user = %+v", u)
			}
			if tt.format == CSV && users[0].Connection() != "Username-Password-Authentication" {
				t.Errorf("connection = %q", users[0].Connection())
			}
		})
	}
}

func TestReaderCSVIdentities(t *testing.T) {
	data := "user_id,email,email_verified,identities[0].provider,identities[0].user_id,identities[0].connection,identities[1].provider,identities[1].user_id\n" +
		"'auth0|p,'p@x.io,true,'auth0,'p,'Username-Password-Authentication,'google-oauth2,'55\n" +
		"'auth0|q,'q@x.io,true,'auth0,'q,'Username-Password-Authentication,,\n"
	users, bad := readAll(t, []byte(data))
	if len(bad) != 0 || len(users) != 2 {
		t.Fatalf("users %v, bad %v", users, bad)
	}
	want := []Identity{{"auth0", "p", "Username-Password-Authentication"}, {"google-oauth2", "55", ""}}
	if !reflect.DeepEqual(users[0].Identities, want) {
		t.Errorf("identities = %+v, want %+v", users[0].Identities, want)
	}
	if len(users[1].Identities) != 1 {
		t.Errorf("second user identities = %+v, want one", users[1].Identities)
	}
}

func TestNewReaderRefuses(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":          nil,
		"blank":          []byte("\n \n"),
		"csv no user_id": []byte("email,name\n'a@b.c,'A\n"),
		"csv twice":      []byte("user_id,User_Id\n"),
		"bad gzip":       {0x1f, 0x8b, 0, 0},
	} {
		if _, err := NewReader(bytes.NewReader(data)); err == nil {
			t.Errorf("%s: NewReader accepted it", name)
		}
	}
}

func TestReaderLongLine(t *testing.T) {
	line := `{"user_id":"auth0|1","pad":"` + strings.Repeat("x", MaxLine) + `"}` + "\n"
	rd, err := NewReader(strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rd.Next()
	var le *LineError
	if err == nil || errors.Is(err, io.EOF) || errors.As(err, &le) {
		t.Fatalf("err = %v, want an error that ends reading", err)
	}
	if _, again := rd.Next(); again == nil || again.Error() != err.Error() {
		t.Errorf("second Next = %v, want the same error", again)
	}
}

func TestIdentityIs(t *testing.T) {
	id := Identity{Provider: "samlp", UserID: "acme|bob"}
	for full, want := range map[string]bool{"samlp|acme|bob": true, "samlp|acme|bo": false, "samlpacme|bob": false, "saml|pacme|bob": false, "": false} {
		if id.Is(full) != want || (full == id.FullID()) != want {
			t.Errorf("Is(%q) = %v, want %v", full, id.Is(full), want)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range strings.Split(ndjsonSample, "\n") {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"user_id":12,"identities":[{"provider":"x","user_id":1e3}]}`))
	f.Add([]byte(`{"user_id":"a|b","created_at":"2020-13-01T00:00:00Z","logins_count":1.5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseLine(b)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("error %v is not a *LineError", err)
			}
			if le.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if u.UserID == "" {
			t.Fatal("accepted a line without user_id")
		}
		if u.LoginsCount < 0 {
			t.Fatal("negative logins_count")
		}
		for _, id := range u.Identities {
			if id.Provider == "" || id.UserID == "" {
				t.Fatalf("identity without provider or user_id: %+v", id)
			}
		}
	})
}

// FuzzReader feeds whole exports, NDJSON or CSV, to the Reader: it must
// end with io.EOF or an error, never panic or loop, and every user it
// returns has a user_id.
func FuzzReader(f *testing.F) {
	f.Add([]byte(ndjsonSample))
	f.Add([]byte(csvSample))
	f.Add([]byte("user_id,identities[0].provider,identities[0].user_id,identities[1].provider\n'a|b,'a,'b,'c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		for range len(data) + 2 {
			u, err := rd.Next()
			if err != nil {
				var le *LineError
				if errors.As(err, &le) {
					continue
				}
				return // io.EOF or an error that ends reading
			}
			if u.UserID == "" {
				t.Fatal("a user without user_id")
			}
		}
		t.Fatal("Next returned more users than the input has bytes")
	})
}
