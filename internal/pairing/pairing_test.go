package pairing

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func day(n int) time.Time { return time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n) }

// u makes a verified user of the given email, created on day created, with
// logins logins, on connection conn, holding the extra identities linked.
func u(id, email string, created int, logins int64, conn string, linked ...string) User {
	return User{ID: id, Email: email, EmailVerified: true, CreatedAt: day(created), Logins: logins,
		Connection: conn, Identities: append([]string{id}, linked...)}
}

func unverified(x User) User { x.EmailVerified = false; return x }

// plan runs both passes and returns the pairs as "primary<-secondary" and
// the placements by user id.
func plan(t *testing.T, cfg Config, users []User) ([]string, map[string]Placement) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p := NewPlanner(cfg)
	for _, x := range users {
		p.Add(x)
	}
	p.Decide()
	var pairs []string
	pls := map[string]Placement{}
	for _, x := range users {
		pl := p.Place(x)
		pls[x.ID] = pl
		if pl.Action == Link {
			pairs = append(pairs, pl.Primary+"<-"+x.ID)
		}
	}
	return pairs, pls
}

func TestPlanner(t *testing.T) {
	oldest := DefaultConfig()
	logins := Config{Policy: Policy{Kind: MostLogins}, MaxGroup: 10}
	conn := Config{Policy: Policy{Kind: Connection, Connection: "db"}, MaxGroup: 10}
	small := Config{Policy: Policy{Kind: Oldest}, MaxGroup: 2}
	tests := []struct {
		name      string
		cfg       Config
		users     []User
		want      []string
		wantState State
		reason    string // a part of the group's reason
	}{
		{"oldest, emails trimmed and lower-cased", oldest,
			[]User{u("auth0|1", " Ann@X.io", 5, 0, "db"), u("google-oauth2|2", "ann@x.io ", 3, 0, "google"), u("github|3", "ANN@X.IO", 9, 0, "github")},
			[]string{"google-oauth2|2<-auth0|1", "google-oauth2|2<-github|3"}, Paired, "oldest"},
		{"oldest tie: smallest user_id", oldest,
			[]User{u("auth0|b", "t@x.io", 1, 0, "db"), u("auth0|a", "t@x.io", 1, 0, "db")},
			[]string{"auth0|a<-auth0|b"}, Paired, "oldest"},
		{"most logins", logins,
			[]User{u("auth0|1", "m@x.io", 1, 4, "db"), u("github|3", "m@x.io", 9, 40, "github")},
			[]string{"github|3<-auth0|1"}, Paired, "most logins: 40"},
		{"most logins tie: smallest user_id", logins,
			[]User{u("github|z", "m@x.io", 1, 4, "github"), u("auth0|y", "m@x.io", 9, 4, "db")},
			[]string{"auth0|y<-github|z"}, Paired, "most logins"},
		{"connection: the one user on it", conn,
			[]User{u("github|3", "c@x.io", 1, 0, "github"), u("auth0|1", "c@x.io", 9, 0, "db")},
			[]string{"auth0|1<-github|3"}, Paired, "connection db"},
		{"connection: none on it", conn,
			[]User{u("github|3", "c@x.io", 1, 0, "github"), u("google-oauth2|1", "c@x.io", 9, 0, "google")},
			nil, NeedsHuman, "0 users on connection db"},
		{"connection: two on it", conn,
			[]User{u("auth0|3", "c@x.io", 1, 0, "db"), u("auth0|1", "c@x.io", 9, 0, "db")},
			nil, NeedsHuman, "2 users on connection db"},
		{"unverified only: never paired", oldest,
			[]User{unverified(u("auth0|1", "u@x.io", 1, 0, "db")), unverified(u("auth0|2", "u@x.io", 2, 0, "db"))},
			nil, Unverified, "no user"},
		{"mixed verified and unverified", oldest,
			[]User{u("auth0|1", "v@x.io", 1, 0, "db"), unverified(u("github|2", "V@x.io", 0, 0, "github"))},
			nil, NeedsHuman, "mixed"},
		{"larger than MaxGroup", small,
			[]User{u("auth0|1", "g@x.io", 1, 0, "db"), u("auth0|2", "g@x.io", 2, 0, "db"), u("auth0|3", "g@x.io", 3, 0, "db")},
			nil, NeedsHuman, "more than the limit of 2"},
		{"existing primary kept, linked identity skipped", oldest,
			[]User{u("auth0|new", "e@x.io", 9, 0, "db", "google-oauth2|g"), u("github|old", "e@x.io", 1, 0, "github"), u("google-oauth2|g", "e@x.io", 0, 0, "google")},
			[]string{"auth0|new<-github|old"}, Paired, "already the primary of 1"},
		{"two existing primaries", oldest,
			[]User{u("auth0|1", "e@x.io", 9, 0, "db", "github|a"), u("auth0|2", "e@x.io", 1, 0, "db", "github|b")},
			nil, NeedsHuman, "2 users already hold linked identities"},
		{"existing primary off the policy's connection", conn,
			[]User{u("github|p", "e@x.io", 9, 0, "github", "google-oauth2|g"), u("auth0|1", "e@x.io", 1, 0, "db")},
			nil, NeedsHuman, "conflict"},
		{"no created_at under oldest", oldest,
			[]User{u("auth0|1", "n@x.io", 1, 0, "db"), {ID: "auth0|2", Email: "n@x.io", EmailVerified: true, Identities: []string{"auth0|2"}}},
			nil, NeedsHuman, "created_at"},
		{"single user", oldest, []User{u("auth0|1", "s@x.io", 1, 0, "db")}, nil, Single, ""},
		{"single unverified user: nothing to link", oldest, []User{unverified(u("auth0|1", "s@x.io", 1, 0, "db"))}, nil, Single, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pairs, pls := plan(t, tt.cfg, tt.users)
			if !reflect.DeepEqual(pairs, tt.want) {
				t.Errorf("pairs = %v, want %v", pairs, tt.want)
			}
			pl := pls[tt.users[0].ID]
			if pl.State != tt.wantState {
				t.Errorf("state = %v, want %v", pl.State, tt.wantState)
			}
			if !strings.Contains(pl.Reason, tt.reason) {
				t.Errorf("reason = %q, want it to contain %q", pl.Reason, tt.reason)
			}
			if pl.Size != len(tt.users) {
				t.Errorf("size = %d, want %d", pl.Size, len(tt.users))
			}
		})
	}
}

func TestPlannerPlacements(t *testing.T) {
	users := []User{
		u("auth0|new", "e@x.io", 9, 0, "db", "google-oauth2|g"),
		u("google-oauth2|g", "e@x.io", 0, 0, "google"),
		u("github|old", "e@x.io", 1, 0, "github"),
		{ID: "auth0|none"},
		unverified(u("auth0|u", "u@x.io", 1, 0, "db")),
		unverified(u("auth0|u2", "U@x.io", 1, 0, "db")),
		u("auth0|m", "m@x.io", 1, 0, "db"),
		unverified(u("auth0|mu", "m@x.io", 1, 0, "db")),
	}
	_, pls := plan(t, DefaultConfig(), users)
	want := map[string]Action{
		"auth0|new": Primary, "google-oauth2|g": AlreadyLinked, "github|old": Link,
		"auth0|none": Nothing, "auth0|u": UnverifiedEmail, "auth0|u2": UnverifiedEmail, "auth0|m": SetAside, "auth0|mu": UnverifiedEmail,
	}
	for id, a := range want {
		if pls[id].Action != a {
			t.Errorf("%s: action %v, want %v", id, pls[id].Action, a)
		}
	}
	p := NewPlanner(DefaultConfig())
	for _, x := range users {
		p.Add(x)
	}
	got := p.Counts()
	wantCounts := Counts{Emails: 3, NoEmail: 1, Paired: 1, Unverified: 1, NeedsHuman: 1}
	if got != wantCounts {
		t.Errorf("counts = %+v, want %+v", got, wantCounts)
	}
}

func TestPlannerCheckID(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CheckID = func(id string) error {
		if strings.HasPrefix(id, "bad") {
			return errors.New("no provider")
		}
		return nil
	}
	pairs, pls := plan(t, cfg, []User{u("auth0|1", "b@x.io", 1, 0, "db"), u("bad1", "b@x.io", 2, 0, "db")})
	if pairs != nil || pls["auth0|1"].State != NeedsHuman || !strings.Contains(pls["auth0|1"].Reason, "cannot be sent") {
		t.Errorf("pairs %v, placement %+v; want the group set aside", pairs, pls["auth0|1"])
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Policy
		ok   bool
	}{
		{"oldest", Policy{Kind: Oldest}, true},
		{" most-logins ", Policy{Kind: MostLogins}, true},
		{"connection=Username-Password-Authentication", Policy{Kind: Connection, Connection: "Username-Password-Authentication"}, true},
		{"connection=", Policy{}, false},
		{"newest", Policy{}, false},
	} {
		got, err := ParsePolicy(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePolicy(%q) = %+v, %v", tt.in, got, err)
		}
		if tt.ok {
			if back, _ := ParsePolicy(got.String()); back != got {
				t.Errorf("%q does not read back", got.String())
			}
		}
	}
	if err := (Config{Policy: Policy{Kind: Oldest}, MaxGroup: 1}).Validate(); err == nil {
		t.Error("MaxGroup 1 accepted")
	}
}
