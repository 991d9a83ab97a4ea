package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linkbatch/linkbatch/batch"
)

// exportUser is one user of a generated export.
type exportUser struct {
	id, email string
	verified  bool
	created   time.Time
	logins    int
	conn      string
	linked    []string // full ids of identities already linked into the user
}

// genExport builds an export with known duplicates and returns it with the
// pairs the oldest policy (with --max-group 10) must yield, in the order of
// the secondaries in the export.
func genExport() ([]exportUser, []pair) {
	at := func(y int) time.Time { return time.Date(y, 3, 1, 12, 0, 0, 0, time.UTC) }
	db := "Username-Password-Authentication"
	users := []exportUser{
		// Mixed case and spaces: one group; the oldest is the primary.
		{id: "auth0|ann1", email: " Ann@Example.com", verified: true, created: at(2020), logins: 3, conn: db},
		{id: "google-oauth2|1077", email: "ann@example.com", verified: true, created: at(2018), logins: 1, conn: "google-oauth2"},
		{id: "github|ann3", email: "ANN@EXAMPLE.COM ", verified: true, created: at(2021), logins: 90, conn: "github"},
		// Unverified only: listed apart, never paired.
		{id: "auth0|bob1", email: "bob@example.com", created: at(2019), conn: db},
		{id: "auth0|bob2", email: "Bob@example.com", created: at(2020), conn: db},
		// Mixed verified and unverified: needs a person.
		{id: "auth0|cat1", email: "cat@example.com", verified: true, created: at(2019), conn: db},
		{id: "github|cat2", email: "cat@example.com", created: at(2017), conn: "github"},
		// Already linked: the existing primary stays primary though newer;
		// the identity already in it is skipped.
		{id: "auth0|dan1", email: "dan@example.com", verified: true, created: at(2023), conn: db, linked: []string{"google-oauth2|2088"}},
		{id: "facebook|dan2", email: "dan@example.com", verified: true, created: at(2016), conn: "facebook"},
		{id: "google-oauth2|2088", email: "dan@example.com", verified: true, created: at(2015), conn: "google-oauth2"},
		// Tie on created_at: the smallest user_id.
		{id: "auth0|eve2", email: "eve@example.com", verified: true, created: at(2020), conn: db},
		{id: "auth0|eve1", email: "eve@example.com", verified: true, created: at(2020), conn: db},
		// No email.
		{id: "auth0|noemail", conn: db, created: at(2020)},
		// Two existing primaries: needs a person.
		{id: "auth0|fay1", email: "fay@example.com", verified: true, created: at(2020), conn: db, linked: []string{"github|fay9"}},
		{id: "auth0|fay2", email: "fay@example.com", verified: true, created: at(2021), conn: db, linked: []string{"github|fay8"}},
	}
	// A user id that 'linkbatch run' refuses (provider not in the API's
	// enum): its group needs a person.
	users = append(users,
		exportUser{id: "auth0|hal1", email: "hal@example.com", verified: true, created: at(2019), conn: db},
		exportUser{id: "myidp|hal2", email: "hal@example.com", verified: true, created: at(2020), conn: "myidp"},
	)
	// A large group: needs a person.
	for i := range 12 {
		users = append(users, exportUser{id: fmt.Sprintf("auth0|big%02d", i), email: "shared@example.com", verified: true, created: at(2000 + i), conn: db})
	}
	// Singles.
	for i := range 20 {
		users = append(users, exportUser{id: fmt.Sprintf("auth0|solo%02d", i), email: fmt.Sprintf("solo%02d@example.com", i), verified: i%2 == 0, created: at(2010 + i%10), conn: db})
	}
	// Groups paired the plain way, after the others.
	users = append(users,
		exportUser{id: "samlp|acme|gus@acme.com", email: "gus@acme.com", verified: true, created: at(2022), conn: "acme"},
		exportUser{id: "auth0|gus", email: "Gus@Acme.com", verified: true, created: at(2012), conn: db},
	)
	want := []pair{
		{Primary: "google-oauth2|1077", Secondary: "auth0|ann1"},
		{Primary: "google-oauth2|1077", Secondary: "github|ann3"},
		{Primary: "auth0|dan1", Secondary: "facebook|dan2"},
		{Primary: "auth0|eve1", Secondary: "auth0|eve2"},
		{Primary: "auth0|gus", Secondary: "samlp|acme|gus@acme.com"},
	}
	return users, want
}

// ownIdentity returns the identity object of a full id.
func ownIdentity(full, conn string) map[string]any {
	provider, rest, _ := strings.Cut(full, "|")
	var uid any = rest
	if n, err := strconv.Atoi(rest); err == nil {
		uid = n // the API may render a social user_id as a number
	}
	return map[string]any{"provider": provider, "user_id": uid, "connection": conn}
}

// writeNDJSON writes users as the JSON form of an export.
func writeNDJSON(t *testing.T, users []exportUser) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, u := range users {
		ids := []any{ownIdentity(u.id, u.conn)}
		for _, l := range u.linked {
			ids = append(ids, ownIdentity(l, ""))
		}
		m := map[string]any{
			"user_id": u.id, "email_verified": u.verified, "logins_count": u.logins,
			"created_at": u.created.Format("2006-01-02T15:04:05.000Z"), "identities": ids,
			"user_metadata": map[string]any{"theme": "dark"},
		}
		if u.email != "" {
			m["email"] = u.email
		}
		line, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// writeExportCSV writes users as the CSV form of an export: every string
// quoted and prefixed with a single quote.
func writeExportCSV(t *testing.T, users []exportUser) []byte {
	t.Helper()
	q := func(s string) string {
		if s == "" {
			return ""
		}
		return `"'` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	var b bytes.Buffer
	b.WriteString(`"user_id","email","email_verified","created_at","logins_count","identities[0].connection","identities[1].provider","identities[1].user_id"` + "\n")
	for _, u := range users {
		var p1, u1 string
		if len(u.linked) > 0 {
			p1, u1, _ = strings.Cut(u.linked[0], "|")
		}
		fmt.Fprintf(&b, "%s,%s,%t,%s,%d,%s,%s,%s\n", q(u.id), q(u.email), u.verified,
			q(u.created.Format(time.RFC3339)), u.logins, q(u.conn), q(p1), q(u1))
	}
	return b.Bytes()
}

func gzipped(t *testing.T, b []byte) []byte {
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

// readPairs reads a pairs file as batch.Reader does, failing on any
// invalid row.
func readPairs(t *testing.T, path string) []pair {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := batch.NewReader(f)
	if err != nil {
		t.Fatalf("batch.NewReader(%s): %v", path, err)
	}
	var out []pair
	for {
		row, err := rd.Next()
		if err != nil {
			break
		}
		if row.Err != nil {
			t.Errorf("%s line %d is invalid: %v", path, row.Line, row.Err)
		}
		out = append(out, pair{Primary: row.Primary, Secondary: row.Secondary})
	}
	return out
}

// runPlan runs 'linkbatch plan' in process.
func runPlan(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var so, se bytes.Buffer
	err := run(context.Background(), append([]string{"plan"}, args...), strings.NewReader(""), &so, &se, func(string) string { return "" }, nil)
	return exitCode(err, &se), so.String(), se.String()
}

func TestPlanFromExport(t *testing.T) {
	users, want := genExport()
	dir := t.TempDir()
	forms := map[string][]byte{
		"users.json":    writeNDJSON(t, users),
		"users.json.gz": gzipped(t, writeNDJSON(t, users)),
		"users.csv":     writeExportCSV(t, users),
		"users.csv.gz":  gzipped(t, writeExportCSV(t, users)),
	}
	for name, data := range forms {
		t.Run(name, func(t *testing.T) {
			in := filepath.Join(dir, name)
			if err := os.WriteFile(in, data, 0o600); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, name+".pairs.csv")
			report := filepath.Join(dir, name+".html")
			code, stdout, stderr := runPlan(t, "--from-export", in, "--out", out, "--report", report, "--force")
			if code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			if got := readPairs(t, out); !reflect.DeepEqual(got, want) {
				t.Errorf("pairs:\n got %v\nwant %v", got, want)
			}
			for _, s := range []string{"4 groups need a person (18 users)", "2 users with unverified emails set apart", "1 already linked", "1 without email"} {
				if !strings.Contains(stdout, s) {
					t.Errorf("summary %q lacks %q", stdout, s)
				}
			}
			html, err := os.ReadFile(report)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{
				"more than the limit of 10", "mixed: 1 verified and 1 unverified", "2 users already hold linked identities",
				"already the primary of 1 linked identities", "auth0|bob1", "oldest: created 2018-03-01T12:00:00Z",
				"the user id \"myidp|hal2\" cannot be sent",
			} {
				if !bytes.Contains(html, []byte(htmlEscaped(s))) {
					t.Errorf("report lacks %q", s)
				}
			}
			if bytes.Contains(html, []byte("http://")) || bytes.Contains(html, []byte("https://")) || bytes.Contains(html, []byte("src=")) {
				t.Error("report refers to a resource outside itself")
			}
		})
	}
}

// htmlEscaped escapes s as html/template writes text.
func htmlEscaped(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "+", "&#43;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

func TestPlanMostLoginsAndConnection(t *testing.T) {
	users, _ := genExport()
	dir := t.TempDir()
	in := filepath.Join(dir, "users.json")
	if err := os.WriteFile(in, writeNDJSON(t, users), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		policy string
		want   []pair
	}{
		{"most-logins", []pair{
			{Primary: "github|ann3", Secondary: "auth0|ann1"}, {Primary: "github|ann3", Secondary: "google-oauth2|1077"}, {Primary: "auth0|dan1", Secondary: "facebook|dan2"},
			{Primary: "auth0|eve1", Secondary: "auth0|eve2"}, {Primary: "auth0|gus", Secondary: "samlp|acme|gus@acme.com"},
		}},
		{"connection=Username-Password-Authentication", []pair{
			{Primary: "auth0|ann1", Secondary: "google-oauth2|1077"}, {Primary: "auth0|ann1", Secondary: "github|ann3"}, {Primary: "auth0|dan1", Secondary: "facebook|dan2"},
			{Primary: "auth0|gus", Secondary: "samlp|acme|gus@acme.com"},
		}},
	} {
		t.Run(tt.policy, func(t *testing.T) {
			out := filepath.Join(dir, "pairs.csv")
			if code, _, stderr := runPlan(t, "--from-export", in, "--out", out, "--primary", tt.policy, "--force"); code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if got := readPairs(t, out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("pairs:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestPlanBadLinesAndUsage(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "users.json")
	data := `{"user_id":"auth0|a","email":"a@x.io","email_verified":true,"created_at":"2020-01-01T00:00:00Z"}
{"user_id":"auth0|b","email":"a@x.io","email_verified":"yes"}
{"user_id":"auth0|c","email":"A@x.io","email_verified":true,"created_at":"2021-01-01T00:00:00Z"}
`
	if err := os.WriteFile(in, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "pairs.csv")
	code, _, stderr := runPlan(t, "--from-export", in, "--out", out)
	if code != exitProblems || !strings.Contains(stderr, "line 2: email_verified") {
		t.Errorf("exit %d, stderr %q; want 1 and the line and field named", code, stderr)
	}
	if got := readPairs(t, out); !reflect.DeepEqual(got, []pair{{Primary: "auth0|a", Secondary: "auth0|c"}}) {
		t.Errorf("pairs = %v", got)
	}
	// Written files are not replaced without --force, whatever the name.
	link := filepath.Join(dir, "link.csv")
	if err := os.Symlink(in, link); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--from-export", in, "--out", out},
		{"--from-export", in, "--out", filepath.Join(dir, "new.csv"), "--report", in},
		{"--from-export", in, "--out", link, "--force"},
		{"--out", out},
		{"--from-export", in},
		{"--from-export", "-", "--out", out},
		{"--from-export", in, "--out", in},
		{"--from-export", in, "--out", out, "--report", out},
		{"--from-export", in, "--out", out, "--primary", "newest"},
		{"--from-export", in, "--out", out, "--max-group", "1"},
		{"--from-export", in, "--out", out, "extra"},
	} {
		code, _, stderr := runPlan(t, args...)
		if code != exitUsage || !strings.Contains(stderr, "linkbatch plan --help") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a pointer to plan's help", args, code, stderr)
		}
	}
	// A missing export aborts and leaves no output behind.
	gone := filepath.Join(dir, "none.csv")
	if code, _, _ := runPlan(t, "--from-export", filepath.Join(dir, "missing.json"), "--out", gone); code != exitAborted {
		t.Errorf("missing export: exit %d, want 3", code)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("output exists after an aborted plan: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// TestPlanOutputRunsDry runs the binary: plan from a generated export, then
// a dry run of its pairs, which must find no invalid row.
func TestPlanOutputRunsDry(t *testing.T) {
	users, want := genExport()
	dir := t.TempDir()
	in := filepath.Join(dir, "users.csv.gz")
	if err := os.WriteFile(in, gzipped(t, writeExportCSV(t, users)), 0o600); err != nil {
		t.Fatal(err)
	}
	pairsFile := filepath.Join(dir, "pairs.csv")
	// --out=FILE: runBinary reads a file after "--out" as a results file.
	res := runBinary(t, invocation{args: []string{"plan", "--from-export", in, "--out=" + pairsFile}})
	if res.code != exitOK {
		t.Fatalf("plan: exit %d\n%s", res.code, res.stderr)
	}
	results := filepath.Join(dir, "x.csv")
	res = runBinary(t, invocation{args: []string{"run", "--dry-run", "--in", pairsFile, "--out", results, "--no-progress"}})
	if res.code != exitOK {
		t.Fatalf("run --dry-run: exit %d\n%s", res.code, res.stderr)
	}
	if len(res.results) != len(want) {
		t.Fatalf("%d result rows, want %d:\n%s", len(res.results), len(want), res.resultsRaw)
	}
	for line, r := range res.results {
		if r.Status != batch.StatusPlanned {
			t.Errorf("line %d: status %s (%s), want planned", line, r.Status, r.Error)
		}
	}
}

func TestPlanInterrupted(t *testing.T) {
	users, _ := genExport()
	dir := t.TempDir()
	for name, data := range map[string][]byte{"users.json": writeNDJSON(t, users), "users.csv": writeExportCSV(t, users)} {
		in := filepath.Join(dir, name)
		if err := os.WriteFile(in, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		out, report := filepath.Join(dir, name+".pairs.csv"), filepath.Join(dir, name+".html")
		var so, se bytes.Buffer
		err := run(ctx, []string{"plan", "--from-export", in, "--out", out, "--report", report}, strings.NewReader(""), &so, &se, func(string) string { return "" }, nil)
		if code := exitCode(err, &se); code != exitAborted || !errors.Is(err, context.Canceled) {
			t.Errorf("%s: exit %d, err %v; want 3 and context.Canceled", name, code, err)
		}
		for _, f := range []string{out, report} {
			if _, err := os.Stat(f); !os.IsNotExist(err) {
				t.Errorf("%s: %s written by an interrupted plan", name, f)
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
