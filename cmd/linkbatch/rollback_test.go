package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// metadataTenant starts a tenant whose pairs' users carry metadata, in
// four kinds (by index mod 4): keys only the secondary holds and a
// conflict; a secondary with none (a naive merge would send {}); a primary
// with none and a nested value in the secondary; both holding the same.
// Every identity carries IdP tokens, which no backup may hold. Secondaries
// of the first kind hold two roles, an organization with a role in it and
// a permission of their own, of the third kind an organization; the token
// may read and grant them.
func metadataTenant(t *testing.T, n int) (*linkertest.Server, string, []pair) {
	t.Helper()
	srv := linkertest.NewServer(linkertest.Config{IdPTokens: true})
	t.Cleanup(srv.Close)
	srv.AddRole("rol_a", "admin")
	srv.AddRole("rol_b", "billing")
	srv.AddOrganization("org_x", "x")
	pairs := clitest.GenPairs("meta", n)
	type md = map[string]any
	for i, p := range pairs {
		email := fmt.Sprintf("user%d@example.com", i)
		var pu, pa, su, sa md
		switch i % 4 {
		case 0:
			pu, pa = md{"lang": "fr", "theme": "dark"}, md{"plan": "gold"}
			su, sa = md{"lang": "en", "nick": fmt.Sprintf("n%d", i)}, md{"crm_id": json.Number(fmt.Sprint(1000 + i))}
		case 1:
			pu, pa = md{"lang": "de"}, md{"plan": "free"}
		case 2:
			su = md{"prefs": md{"tags": []any{"a", "b"}, "n": json.Number("1.5")}}
		case 3:
			pu, su = md{"lang": "it"}, md{"lang": "it"}
			sa = md{}
		}
		srv.AddUser(linkertest.User{UserID: p.Primary, Email: email, EmailVerified: true, UserMetadata: pu, AppMetadata: pa})
		var roles, orgs []string
		var perms []linkertest.Permission
		var orgRoles map[string][]string
		switch i % 4 {
		case 0:
			roles, orgs = []string{"rol_a", "rol_b"}, []string{"org_x"}
			perms = []linkertest.Permission{{API: "https://api.example", Name: "export:reports"}}
			orgRoles = map[string][]string{"org_x": {"rol_b"}}
		case 2:
			orgs = []string{"org_x"}
		}
		srv.AddUser(linkertest.User{UserID: p.Secondary, Email: email, EmailVerified: true, UserMetadata: su, AppMetadata: sa,
			Roles: roles, Organizations: orgs, Permissions: perms, OrganizationRoles: orgRoles})
	}
	return srv, srv.IssueToken(time.Hour, "read:users", "update:users", "read:roles", "read:organizations", "create:organization_members",
		"read:organization_member_roles", "create:organization_member_roles"), pairs
}

// metadataOf returns every user's metadata, roles, organizations, direct
// permissions and roles within organizations as
// JSON text (an empty object written as none), by id; it fails the test if a user is not standalone.
func metadataOf(t *testing.T, srv *linkertest.Server, pairs []pair) map[string]string {
	t.Helper()
	out := map[string]string{}
	norm := func(m map[string]any) map[string]any {
		if len(m) == 0 {
			return nil
		}
		return m
	}
	for _, p := range pairs {
		for _, id := range []string{p.Primary, p.Secondary} {
			u, ok := srv.User(id)
			if !ok {
				t.Fatalf("%s is not a standalone user", id)
			}
			b, _ := json.Marshal([6]any{norm(u.UserMetadata), norm(u.AppMetadata), u.Roles, u.Organizations, u.Permissions, u.OrganizationRoles})
			out[id] = string(b)
		}
	}
	return out
}

func TestMigrationBackupMergeRollback(t *testing.T) {
	srv, tok, pairs := metadataTenant(t, 12)
	before := metadataOf(t, srv, pairs)
	if s0, _ := srv.User(pairs[0].Secondary); len(s0.Roles) != 2 {
		t.Fatalf("the tenant's first secondary holds roles %v", s0.Roles)
	}
	in := writeInput(t, pairs)
	dir := t.TempDir()
	audit, results := filepath.Join(dir, "audit.csv"), filepath.Join(dir, "results.csv")
	backup, rollback := filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "rollback.csv")
	env := tenantEnv(srv, tok)

	// The dry run with --verify says what the merge would do.
	out := runBinary(t, invocation{args: []string{"run", "--dry-run", "--verify", "--merge-metadata", "primary-wins", "--in", in, "--out", audit}, env: env})
	if out.code != exitOK {
		t.Fatalf("dry run: exit %d\n%s", out.code, out.stderr)
	}
	if r := out.results[2]; r.Status != batch.StatusPlanned || r.Error != "note: metadata merge adds user_metadata.nick app_metadata.crm_id; conflicts (primary wins) user_metadata.lang" {
		t.Errorf("dry run, line 2: %q %q", r.Status, r.Error)
	}
	if r := out.results[3]; r.Error != "" {
		t.Errorf("dry run, line 3 (a secondary without metadata): %q", r.Error)
	}
	if st := srv.Stats(); st.Patches != 0 || st.LinksApplied != 0 {
		t.Fatalf("the dry run wrote: %d PATCHes, %d links", st.Patches, st.LinksApplied)
	}

	// The real run, backed up, merges and links every pair.
	out = runBinary(t, invocation{args: []string{"run", "--backup", backup, "--merge-metadata", "primary-wins", "--in", in, "--out", results}, env: env})
	if out.code != exitOK {
		t.Fatalf("run: exit %d\n%s", out.code, out.stderr)
	}
	checkAllLinked(t, srv, pairs, out)
	if strings.Contains(out.stderr, "no way back") {
		t.Error("a run with --backup warned that there is no way back")
	}
	p0, _ := srv.User(pairs[0].Primary)
	if p0.UserMetadata["nick"] != "n0" || p0.UserMetadata["lang"] != "fr" || p0.AppMetadata["crm_id"] != json.Number("1000") {
		t.Errorf("line 2 merged into %v %v", p0.UserMetadata, p0.AppMetadata)
	}
	raw, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, []byte("\n")); n != len(pairs) {
		t.Errorf("%d backup records, want %d", n, len(pairs))
	}
	if bytes.Contains(raw, []byte("idp-secret-")) {
		t.Error("the backup holds IdP tokens")
	}

	// A dry rollback sends nothing.
	out = runBinary(t, invocation{args: []string{"rollback", "--dry-run", "--results", results, "--backup", backup, "--out", filepath.Join(dir, "dry-rollback.csv")}, env: env})
	if out.code != exitOK || len(out.results) != len(pairs) || out.results[2].Status != batch.StatusPlanned {
		t.Fatalf("dry rollback: exit %d, %d rows, line 2 %+v\n%s", out.code, len(out.results), out.results[2], out.stderr)
	}
	if st := srv.Stats(); st.Unlinks != 0 {
		t.Fatalf("a dry rollback sent %d unlinks", st.Unlinks)
	}

	// The rollback restores every user's metadata, roles and memberships
	// as the backup recorded.
	out = runBinary(t, invocation{args: []string{"rollback", "--results", results, "--backup", backup, "--out", rollback}, env: env})
	if out.code != exitOK {
		t.Fatalf("rollback: exit %d\n%s", out.code, out.stderr)
	}
	for i := range pairs {
		if r := out.results[i+2]; r.Status != batch.StatusUnlinked {
			t.Errorf("rollback, line %d: %q %s", i+2, r.Status, r.Error)
		}
	}
	after := metadataOf(t, srv, pairs)
	for id, want := range before {
		if after[id] != want {
			t.Errorf("%s: metadata %s after the rollback, want %s", id, after[id], want)
		}
	}
	if st := srv.Stats(); st.MetadataWipes != 0 {
		t.Errorf("%d PATCHes wiped a metadata object", st.MetadataWipes)
	}

	// Rolled back again (as after a lost answer), every row is
	// already_unlinked and nothing changes.
	patches := srv.Stats().Patches
	out = runBinary(t, invocation{args: []string{"rollback", "--results", results, "--backup", backup, "--out", filepath.Join(dir, "again.csv"), "--lines", "2-5"}, env: env})
	if out.code != exitOK || len(out.results) != 4 || out.results[5].Status != batch.StatusAlreadyUnlinked {
		t.Fatalf("second rollback: exit %d, %v\n%s", out.code, out.results, out.stderr)
	}
	if n := srv.Stats().Patches - patches; n != 0 {
		t.Errorf("the second rollback sent %d PATCHes", n)
	}
}

// refusingProxy serves the tenant through a proxy that answers 400 to every
// PATCH of the user id.
func refusingProxy(t *testing.T, srv *linkertest.Server, id string) *httptest.Server {
	t.Helper()
	target, _ := url.Parse(srv.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.EscapedPath(), "/"+url.PathEscape(id)) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"statusCode":400,"error":"Bad Request","message":"Payload validation error: 'refused'.","errorCode":"invalid_body"}`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(px.Close)
	return px
}

func TestRunPatchFailureLeavesPairUnlinked(t *testing.T) {
	srv, tok, pairs := metadataTenant(t, 4)
	px := refusingProxy(t, srv, pairs[0].Primary)
	in := writeInput(t, pairs)
	dir := t.TempDir()
	out := runBinary(t, invocation{
		args: []string{"run", "--backup", filepath.Join(dir, "backup.ndjson"), "--merge-metadata", "secondary-wins", "--in", in, "--out", filepath.Join(dir, "results.csv")},
		env:  []string{"AUTH0_DOMAIN=" + px.URL, "AUTH0_TOKEN=" + tok},
	})
	if out.code != exitProblems {
		t.Fatalf("exit %d, want %d\n%s", out.code, exitProblems, out.stderr)
	}
	if r := out.results[2]; r.Status != batch.StatusFailed || !strings.HasPrefix(r.Error, "merge metadata (not linked)") {
		t.Errorf("line 2: %q %q, want failed, not linked", r.Status, r.Error)
	}
	if p, ok := srv.LinkedTo(pairs[0].Secondary); ok {
		t.Errorf("%s was linked into %s although its merge failed", pairs[0].Secondary, p)
	}
	if n := srv.Stats().PostsByPrimary[pairs[0].Primary]; n != 0 {
		t.Errorf("%d link requests for the pair whose merge failed", n)
	}
	for line := 3; line <= 5; line++ {
		if r := out.results[line]; r.Status != batch.StatusLinked {
			t.Errorf("line %d: %q %s, want linked", line, r.Status, r.Error)
		}
	}
	if st := srv.Stats(); st.MetadataWipes != 0 {
		t.Errorf("%d PATCHes wiped a metadata object", st.MetadataWipes)
	}
}

func TestRunWithoutBackupWarnsOnce(t *testing.T) {
	srv, tok, pairs := metadataTenant(t, 2)
	in := writeInput(t, pairs)
	out := runLinkbatch(t, invocation{args: []string{"run", "--in", in, "--out", filepath.Join(t.TempDir(), "r.csv")}, env: tenantEnv(srv, tok)})
	if out.code != exitOK {
		t.Fatalf("exit %d\n%s", out.code, out.stderr)
	}
	if n := strings.Count(out.stderr, "there will be no way back"); n != 1 {
		t.Errorf("the warning was logged %d times, want once\n%s", n, out.stderr)
	}
	out = runLinkbatch(t, invocation{args: []string{"run", "--dry-run", "--in", in, "--out", filepath.Join(t.TempDir(), "d.csv")}})
	if strings.Contains(out.stderr, "no way back") {
		t.Error("a dry run warned that there is no way back")
	}
}

func TestRunBackupRefusals(t *testing.T) {
	srv, tok, pairs := metadataTenant(t, 2)
	in := writeInput(t, pairs)
	dir := t.TempDir()
	used := filepath.Join(dir, "used.ndjson")
	if err := os.WriteFile(used, []byte(`{"line":2}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"dry run", []string{"--dry-run", "--backup", filepath.Join(dir, "b1.ndjson")}, "--backup goes with a real run"},
		{"backup is the input", []string{"--backup", in}, "name the same file"},
		{"backup of another run", []string{"--backup", used}, "already exists and is not empty"},
		{"unknown merge policy", []string{"--merge-metadata", "both"}, "merge policy must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "r.csv")
			got := runLinkbatch(t, invocation{args: append([]string{"run", "--in", in, "--out", out}, tt.args...), env: tenantEnv(srv, tok)})
			if got.code != exitUsage || !strings.Contains(got.stderr, tt.want) {
				t.Errorf("exit %d, want %d with %q\n%s", got.code, exitUsage, tt.want, got.stderr)
			}
			if st := srv.Stats(); st.Requests != 0 {
				t.Errorf("%d requests sent", st.Requests)
			}
		})
	}
}

// hangingProxy serves the tenant through a proxy that never answers a link
// request for the primary id (it holds it until the client goes away or the
// test ends).
func hangingProxy(t *testing.T, srv *linkertest.Server, primary string) *httptest.Server {
	t.Helper()
	target, _ := url.Parse(srv.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	release := make(chan struct{})
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.EscapedPath(), url.PathEscape(primary)+"/identities") {
			// Read the body so that the server notices the client going away.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(px.Close)
	t.Cleanup(func() { close(release) }) // runs before px.Close
	return px
}

func TestRunKilledBetweenBackupAndLinkResumes(t *testing.T) {
	srv, tok, pairs := metadataTenant(t, 8)
	before := metadataOf(t, srv, pairs)
	in := writeInput(t, pairs)
	dir := t.TempDir()
	results, backup := filepath.Join(dir, "results.csv"), filepath.Join(dir, "backup.ndjson")
	args := []string{"run", "--resume", "--backup", backup, "--merge-metadata", "primary-wins", "--in", in, "--out", results, "--workers", "2"}

	// Line 6 (a pair with keys to merge) is backed up and merged, and its
	// link never answered: the process is killed there.
	hung := pairs[4]
	px := hangingProxy(t, srv, hung.Primary)
	p := startBinary(t, invocation{args: args, env: []string{"AUTH0_DOMAIN=" + px.URL, "AUTH0_TOKEN=" + tok}})
	waitUntil(t, 30*time.Second, p, "the merge of line 6", func() bool {
		u, _ := srv.User(hung.Primary)
		return u.UserMetadata["nick"] != nil
	})
	p.signal(t, syscall.SIGKILL)
	if code := p.wait(t, 10*time.Second); code != -1 {
		t.Fatalf("exit code %d, want death by signal", code)
	}
	if _, ok := srv.LinkedTo(hung.Secondary); ok {
		t.Fatal("line 6 was linked before the kill")
	}
	raw, _ := os.ReadFile(backup)
	if !bytes.Contains(raw, []byte(`"line":6,`)) {
		t.Fatalf("line 6 was not backed up before its merge:\n%s", raw)
	}

	// The same command, against the tenant itself, finishes the job.
	out := runBinary(t, invocation{args: args, env: tenantEnv(srv, tok)})
	if out.code != exitOK {
		t.Fatalf("resumed run: exit %d\n%s", out.code, out.stderr)
	}
	checkAllLinked(t, srv, pairs, out)

	// The backup's first record of line 6 holds the primary before its
	// merge: the rollback restores it.
	out = runBinary(t, invocation{args: []string{"rollback", "--results", results, "--backup", backup, "--out", filepath.Join(dir, "rollback.csv")}, env: tenantEnv(srv, tok)})
	if out.code != exitOK {
		t.Fatalf("rollback: exit %d\n%s", out.code, out.stderr)
	}
	after := metadataOf(t, srv, pairs)
	for id, want := range before {
		if after[id] != want {
			t.Errorf("%s: metadata %s after the rollback, want %s", id, after[id], want)
		}
	}
}

func TestRollbackResumes(t *testing.T) {
	srv, tok, pairs := metadataTenant(t, 6)
	before := metadataOf(t, srv, pairs)
	in := writeInput(t, pairs)
	dir := t.TempDir()
	results, backup, rb := filepath.Join(dir, "results.csv"), filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "rollback.csv")
	env := tenantEnv(srv, tok)
	if out := runLinkbatch(t, invocation{args: []string{"run", "--backup", backup, "--merge-metadata", "secondary-wins", "--in", in, "--out", results}, env: env}); out.code != exitOK {
		t.Fatalf("run: exit %d\n%s", out.code, out.stderr)
	}
	// A first rollback of two lines, as if it had been stopped there.
	out := runLinkbatch(t, invocation{args: []string{"rollback", "-P", "--results", results, "--backup", backup, "--out", rb, "--lines", "2,4"}, env: env})
	if out.code != exitOK || len(out.results) != 2 {
		t.Fatalf("first rollback: exit %d, %v\n%s", out.code, out.results, out.stderr)
	}
	if !strings.Contains(out.stderr, "2/2 rows") {
		t.Errorf("first rollback: the progress line does not show 2/2 rows:\n%s", out.stderr)
	}
	// Without --resume, the rollback's results are not overwritten.
	if out := runLinkbatch(t, invocation{args: []string{"rollback", "--results", results, "--backup", backup, "--out", rb}, env: env}); out.code != exitUsage ||
		!strings.Contains(out.stderr, "add --resume") || !strings.Contains(out.stderr, "Run 'linkbatch rollback --help'") {
		t.Fatalf("rollback onto a used --out: exit %d, want %d\n%s", out.code, exitUsage, out.stderr)
	}
	unlinks := srv.Stats().Unlinks
	out = runLinkbatch(t, invocation{args: []string{"rollback", "-P", "--resume", "--results", results, "--backup", backup, "--out", rb}, env: env})
	if out.code != exitOK || len(out.results) != len(pairs) {
		t.Fatalf("resumed rollback: exit %d, %d rows\n%s", out.code, len(out.results), out.stderr)
	}
	if want := fmt.Sprintf("%d/%d rows", len(pairs)-2, len(pairs)-2); !strings.Contains(out.stderr, want) {
		t.Errorf("resumed rollback: the progress line does not show %s (the rows left to do):\n%s", want, out.stderr)
	}
	for line, r := range out.results {
		if r.Status != batch.StatusUnlinked {
			t.Errorf("line %d: %q %s", line, r.Status, r.Error)
		}
	}
	if n := srv.Stats().Unlinks - unlinks; n != len(pairs)-2 {
		t.Errorf("the resumed rollback sent %d unlinks, want %d", n, len(pairs)-2)
	}
	after := metadataOf(t, srv, pairs)
	for id, want := range before {
		if after[id] != want {
			t.Errorf("%s: metadata %s after the rollback, want %s", id, after[id], want)
		}
	}
}

func TestRunBackupIsLocked(t *testing.T) {
	srv, tok, pairs := metadataTenant(t, 2)
	in := writeInput(t, pairs)
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.ndjson")
	px := hangingProxy(t, srv, pairs[0].Primary)
	p := startBinary(t, invocation{
		args: []string{"run", "--backup", backup, "--in", in, "--out", filepath.Join(dir, "a.csv")},
		env:  []string{"AUTH0_DOMAIN=" + px.URL, "AUTH0_TOKEN=" + tok},
	})
	waitUntil(t, 30*time.Second, p, "the first backup record", func() bool {
		raw, _ := os.ReadFile(backup)
		return len(raw) > 0
	})
	out := runLinkbatch(t, invocation{args: []string{"run", "--resume", "--backup", backup, "--in", in, "--out", filepath.Join(dir, "b.csv")}, env: tenantEnv(srv, tok)})
	if out.code != exitUsage || !strings.Contains(out.stderr, "--backup "+backup+" is in use by another linkbatch run") {
		t.Errorf("a second run on the backup: exit %d\n%s", out.code, out.stderr)
	}
	p.signal(t, syscall.SIGKILL)
	p.wait(t, 10*time.Second)
}

func TestParseLines(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{in: "2", want: []int{2}},
		{in: "2, 7-9 ,4", want: []int{2, 4, 7, 8, 9}},
		{in: "5-5", want: []int{5}},
		{in: "0", wantErr: true},
		{in: "9-7", wantErr: true},
		{in: "2,,3", wantErr: true},
		{in: "a-3", wantErr: true},
		{in: "1-99999999", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			set, err := parseLines(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if set.Len() != len(tt.want) {
				t.Errorf("%d lines, want %v", set.Len(), tt.want)
			}
			for _, n := range tt.want {
				if !set.Has(n) {
					t.Errorf("line %d missing", n)
				}
			}
		})
	}
}
