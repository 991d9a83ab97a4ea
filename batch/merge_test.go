package batch

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// metadataTenant holds three pairs whose users carry metadata: one with
// keys only the secondary holds and one conflict, one whose secondary has
// none (a naive merge would PATCH {}), and one whose secondary holds only
// what the primary holds already.
func metadataTenant(t *testing.T) *linkertest.Server {
	t.Helper()
	srv := linkertest.NewServer(linkertest.Config{IdPTokens: true})
	t.Cleanup(srv.Close)
	add := func(id string, um, am map[string]any) {
		srv.AddUser(linkertest.User{UserID: id, Email: "same@example.com", EmailVerified: true, UserMetadata: um, AppMetadata: am})
	}
	add("auth0|p1", map[string]any{"lang": "fr", "theme": "dark"}, map[string]any{"plan": "gold"})
	add("github|s1", map[string]any{"lang": "en", "nick": "ann"}, map[string]any{"crm_id": json.Number("42")})
	add("auth0|p2", map[string]any{"lang": "de"}, map[string]any{"plan": "free"})
	add("github|s2", nil, nil)
	add("auth0|p3", map[string]any{"lang": "it"}, nil)
	add("github|s3", map[string]any{"lang": "it"}, map[string]any{})
	return srv
}

const metadataInput = "primary_user_id,secondary_user_id\nauth0|p1,github|s1\nauth0|p2,github|s2\nauth0|p3,github|s3\n"

// runnerAt returns a Runner whose client talks to base through hc.
func runnerAt(t *testing.T, srv *linkertest.Server, base string, hc *http.Client, cfg Config) *Runner {
	t.Helper()
	d, err := linker.ParseDomain(base)
	if err != nil {
		t.Fatal(err)
	}
	client, err := linker.NewClient(d, linker.StaticToken(srv.IssueToken(time.Hour)), linker.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	pc := ratelimit.DefaultConfig()
	pc.Rate, pc.Burst, pc.MaxRetries, pc.MaxBackoff = 1000, 100, 1, 200*time.Millisecond
	pacer, err := ratelimit.New(pc, linker.Retryable)
	if err != nil {
		t.Fatal(err)
	}
	return &Runner{Config: cfg, Client: client, Pacer: pacer}
}

// refusePatches serves srv through a proxy that answers every PATCH of
// the user id with 400.
func refusePatches(t *testing.T, srv *linkertest.Server, id string) *httptest.Server {
	t.Helper()
	return proxy(t, srv, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPatch || !strings.HasSuffix(r.URL.EscapedPath(), "/"+url.PathEscape(id)) {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"statusCode":400,"error":"Bad Request","message":"Payload validation error: 'refused by the test'.","errorCode":"invalid_body"}`))
		return true
	})
}

// proxy serves srv through a proxy that lets intercept answer a request
// first (it reports true when it did).
func proxy(t *testing.T, srv *linkertest.Server, intercept func(http.ResponseWriter, *http.Request) bool) *httptest.Server {
	t.Helper()
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = srv.Client().Transport
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !intercept(w, r) {
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(px.Close)
	return px
}

func TestMergeFailedPatchLeavesPairUnlinked(t *testing.T) {
	srv := metadataTenant(t)
	px := refusePatches(t, srv, "auth0|p1")
	cfg := DefaultConfig()
	cfg.Merge = MergePrimaryWins
	r := runnerAt(t, srv, px.URL, px.Client(), cfg)
	got, _ := runAndCollect(t, r, metadataInput)

	if res := got[2]; res.Status != StatusFailed || res.HTTPStatus != 400 || !strings.Contains(res.Error, "merge metadata (not linked)") {
		t.Errorf("line 2: %+v, want failed 400 with the merge named", res)
	}
	if p, ok := srv.LinkedTo("github|s1"); ok {
		t.Errorf("github|s1 was linked into %s although its merge failed", p)
	}
	if st := srv.Stats(); st.PostsByPrimary["auth0|p1"] != 0 {
		t.Errorf("%d link requests for auth0|p1, want none", st.PostsByPrimary["auth0|p1"])
	}
	for _, line := range []int{3, 4} {
		if got[line].Status != StatusLinked {
			t.Errorf("line %d: %+v, want linked", line, got[line])
		}
	}
}

func TestMergeNeverSendsEmptyObject(t *testing.T) {
	for _, policy := range []MergePolicy{MergePrimaryWins, MergeSecondaryWins} {
		t.Run(string(policy), func(t *testing.T) {
			srv := metadataTenant(t)
			cfg := DefaultConfig()
			cfg.Merge = policy
			r := newTestRunner(t, srv, cfg)
			got, _ := runAndCollect(t, r, metadataInput)
			for line := 2; line <= 4; line++ {
				if got[line].Status != StatusLinked {
					t.Errorf("line %d: %+v, want linked", line, got[line])
				}
			}
			st := srv.Stats()
			if st.MetadataWipes != 0 {
				t.Errorf("%d PATCHes wiped a metadata object", st.MetadataWipes)
			}
			// Only the first pair has anything to merge.
			if st.Patches != 1 {
				t.Errorf("%d PATCHes, want 1 (only what changes)", st.Patches)
			}
			p1, _ := srv.User("auth0|p1")
			wantLang := "fr"
			if policy == MergeSecondaryWins {
				wantLang = "en"
			}
			wantUM := map[string]any{"lang": wantLang, "theme": "dark", "nick": "ann"}
			wantAM := map[string]any{"plan": "gold", "crm_id": json.Number("42")}
			if !reflect.DeepEqual(p1.UserMetadata, wantUM) || !reflect.DeepEqual(p1.AppMetadata, wantAM) {
				t.Errorf("auth0|p1 metadata %v %v, want %v %v", p1.UserMetadata, p1.AppMetadata, wantUM, wantAM)
			}
			p2, _ := srv.User("auth0|p2")
			if !reflect.DeepEqual(p2.UserMetadata, map[string]any{"lang": "de"}) || !reflect.DeepEqual(p2.AppMetadata, map[string]any{"plan": "free"}) {
				t.Errorf("auth0|p2 metadata %v %v changed", p2.UserMetadata, p2.AppMetadata)
			}
		})
	}
}

func TestMergeDryRunVerifyListsKeys(t *testing.T) {
	srv := metadataTenant(t)
	cfg := DefaultConfig()
	cfg.Merge, cfg.DryRun, cfg.Verify = MergePrimaryWins, true, true
	r := newTestRunner(t, srv, cfg)
	got, _ := runAndCollect(t, r, metadataInput)
	want := "note: metadata merge adds user_metadata.nick app_metadata.crm_id; conflicts (primary wins) user_metadata.lang"
	if res := got[2]; res.Status != StatusPlanned || res.Error != want {
		t.Errorf("line 2: %q %q, want planned %q", res.Status, res.Error, want)
	}
	if res := got[3]; res.Status != StatusPlanned || res.Error != "" {
		t.Errorf("line 3: %+v, want planned with no note", res)
	}
	if st := srv.Stats(); st.Patches != 0 || st.LinksApplied != 0 {
		t.Errorf("a dry run wrote: %d PATCHes, %d links", st.Patches, st.LinksApplied)
	}
}

func TestBackupRecordsBothUsersWithoutIdPTokens(t *testing.T) {
	srv := metadataTenant(t)
	path := filepath.Join(t.TempDir(), "backup.ndjson")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := DefaultConfig()
	cfg.Merge = MergePrimaryWins
	r := newTestRunner(t, srv, cfg)
	r.Backup = NewBackupWriter(f)
	runAndCollect(t, r, metadataInput)

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("idp-secret-")) || bytes.Contains(b, []byte("access_token")) {
		t.Fatalf("the backup holds IdP tokens:\n%s", b)
	}
	rf, _ := os.Open(path)
	defer rf.Close()
	idx, err := IndexBackup(rf, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := idx.Lookup(2)
	if err != nil {
		t.Fatal(err)
	}
	p, s, err := rec.profiles()
	if err != nil {
		t.Fatal(err)
	}
	if rec.Primary != "auth0|p1" || rec.Secondary != "github|s1" || p.UserID != "auth0|p1" || s.UserID != "github|s1" {
		t.Errorf("record of line 2 names %s %s, users %s %s", rec.Primary, rec.Secondary, p.UserID, s.UserID)
	}
	// The primary as it was before the merge.
	if !reflect.DeepEqual(p.UserMetadata, map[string]any{"lang": "fr", "theme": "dark"}) {
		t.Errorf("backed-up primary metadata %v", p.UserMetadata)
	}
	if !reflect.DeepEqual(s.AppMetadata, map[string]any{"crm_id": json.Number("42")}) {
		t.Errorf("backed-up secondary app_metadata %v", s.AppMetadata)
	}
	if idx.Len() != 3 {
		t.Errorf("%d lines backed up, want 3", idx.Len())
	}
}

func TestMergeRereadsStalePrimary(t *testing.T) {
	tests := []struct {
		name     string
		fresh    time.Duration
		wantNick string
	}{
		{name: "read too long ago: read again", fresh: 5 * time.Second, wantNick: "mine"},
		{name: "read recently: trusted", fresh: time.Hour, wantNick: "ann"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := metadataTenant(t)
			// Once the primary has been read, someone gives it a key the
			// secondary holds too.
			px := proxy(t, srv, func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.EscapedPath(), "/"+url.PathEscape("github|s1")) {
					u, _ := srv.User("auth0|p1")
					u.UserMetadata["nick"] = "mine"
					srv.AddUser(u)
				}
				return false
			})
			cfg := DefaultConfig()
			cfg.Merge, cfg.Fresh = MergePrimaryWins, tt.fresh
			r := runnerAt(t, srv, px.URL, px.Client(), cfg)
			var mu sync.Mutex
			clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			r.Now = func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				clock = clock.Add(10 * time.Second)
				return clock
			}
			got, _ := runAndCollect(t, r, "primary_user_id,secondary_user_id\nauth0|p1,github|s1\n")
			if got[2].Status != StatusLinked {
				t.Fatalf("line 2: %+v", got[2])
			}
			p1, _ := srv.User("auth0|p1")
			if p1.UserMetadata["nick"] != tt.wantNick {
				t.Errorf("nick %v, want %q", p1.UserMetadata["nick"], tt.wantNick)
			}
			if p1.UserMetadata["theme"] != "dark" || p1.AppMetadata["crm_id"] != json.Number("42") {
				t.Errorf("metadata after the merge %v %v", p1.UserMetadata, p1.AppMetadata)
			}
		})
	}
}
