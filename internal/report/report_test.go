package report

import (
	"github.com/linkbatch/linkbatch/batch"

	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// resultsFile returns rs as a results file.
func resultsFile(t *testing.T, rs ...batch.Result) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	w, err := batch.NewResultWriter(&buf, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	return &buf
}

func renderReport(t *testing.T, info Info, rs ...batch.Result) string {
	t.Helper()
	var out bytes.Buffer
	if err := Write(&out, resultsFile(t, rs...), info); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return out.String()
}

func TestReportAggregation(t *testing.T) {
	type kind struct {
		section int
		name    string
		count   int
		lines   []int // kept rows, by line
	}
	tests := []struct {
		name         string
		limit        int
		give         []batch.Result
		wantStatuses map[string]int
		wantWarnings map[string]int
		wantKinds    []kind
		wantRetry    int // retryable rows among failed kinds
		wantWarned   int // linked rows with a warning
	}{
		{
			name: "invalid rows group by field and message, not by value or line",
			give: []batch.Result{
				{Line: 9, Status: batch.StatusInvalid, Error: `secondary_user_id: provider "myspace" is not a known identity provider`},
				{Line: 3, Status: batch.StatusInvalid, Error: `secondary_user_id: provider "friendster" is not a known identity provider`},
				{Line: 4, Status: batch.StatusInvalid, Error: `secondary_provider: provider "myspace" is not a known identity provider`},
				{Line: 5, Status: batch.StatusInvalid, Error: `secondary_user_id: also given to a different primary on line 2`},
				{Line: 7, Status: batch.StatusInvalid, Error: `secondary_user_id: also given to a different primary on line 6`},
				{Line: 8, Status: batch.StatusInvalid, Error: `parse error on line 8, column 43: bare " in non-quoted-field`},
				{Line: 6, Status: batch.StatusPlanned},
				{Line: 2, Status: batch.StatusPlanned},
			},
			wantStatuses: map[string]int{string(batch.StatusInvalid): 6, string(batch.StatusPlanned): 2},
			wantWarnings: map[string]int{},
			wantKinds: []kind{
				{secInvalid, `parse error on line N, column N: bare " in non-quoted-field`, 1, []int{8}},
				{secInvalid, `secondary_provider: provider "…" is not a known identity provider`, 1, []int{4}},
				{secInvalid, `secondary_user_id: also given to a different primary on line N`, 2, []int{5, 7}},
				{secInvalid, `secondary_user_id: provider "…" is not a known identity provider`, 2, []int{3, 9}},
			},
		},
		{
			name:  "keeps the lowest lines up to the limit, whatever the order",
			limit: 2,
			give: []batch.Result{
				{Line: 50, Status: batch.StatusSkipped, Error: "duplicate of line 2"},
				{Line: 7, Status: batch.StatusSkipped, Error: "duplicate of line 2"},
				{Line: 30, Status: batch.StatusSkipped, Error: "duplicate of line 2"},
				{Line: 4, Status: batch.StatusSkipped, Error: "duplicate of line 2"},
				{Line: 12, Status: batch.StatusSkipped, Error: "duplicate of line 2"},
				{Line: 3, Status: batch.StatusAlreadyLinked, HTTPStatus: 200},
			},
			wantStatuses: map[string]int{string(batch.StatusSkipped): 5, string(batch.StatusAlreadyLinked): 1},
			wantWarnings: map[string]int{},
			wantKinds: []kind{
				{secSkipped, string(batch.StatusSkipped), 5, []int{4, 7}},
				{secAlreadyLinked, string(batch.StatusAlreadyLinked), 1, []int{3}},
			},
		},
		{
			name: "failed rows group by the API's answer",
			give: []batch.Result{
				{Line: 2, Status: batch.StatusFailed, HTTPStatus: 400, ErrorCode: "invalid_body", Error: "Payload validation error"},
				{Line: 3, Status: batch.StatusFailed, HTTPStatus: 400, ErrorCode: "invalid_body", Error: "Another message"},
				{Line: 4, Status: batch.StatusFailed, HTTPStatus: 503, Retryable: true, Error: "retries exhausted"},
				{Line: 5, Status: batch.StatusFailed, Retryable: true, Error: "connection refused"},
				{Line: 6, Status: batch.StatusFailed, HTTPStatus: 409, ErrorCode: "identity_exists"},
				{Line: 7, Status: batch.StatusLinked, HTTPStatus: 201},
			},
			wantStatuses: map[string]int{string(batch.StatusFailed): 5, string(batch.StatusLinked): 1},
			wantWarnings: map[string]int{},
			wantKinds: []kind{
				{secFailed, "HTTP 400 invalid_body", 2, []int{2, 3}},
				{secFailed, "HTTP 409 identity_exists", 1, []int{6}},
				{secFailed, "HTTP 503", 1, []int{4}},
				{secFailed, "no answer from the API", 1, []int{5}},
			},
			wantRetry: 2,
		},
		{
			name: "warnings count whatever the status",
			give: []batch.Result{
				{Line: 2, Status: batch.StatusPlanned, Warning: batch.WarnEmailUnverified},
				{Line: 3, Status: batch.StatusLinked, Warning: batch.WarnEmailMismatch},
				{Line: 4, Status: batch.StatusLinked, Warning: batch.WarnEmailUnverified},
				{Line: 5, Status: batch.StatusInvalid, Warning: batch.WarnEmailMismatch, Error: "refused by --require-verified-email: the two users' emails differ"},
				{Line: 6, Status: batch.StatusLinked},
			},
			wantStatuses: map[string]int{string(batch.StatusPlanned): 1, string(batch.StatusLinked): 3, string(batch.StatusInvalid): 1},
			wantWarnings: map[string]int{batch.WarnEmailUnverified: 2, batch.WarnEmailMismatch: 2},
			wantKinds: []kind{
				{secInvalid, "refused by --require-verified-email: the two users' emails differ", 1, []int{5}},
				{secWarning, batch.WarnEmailMismatch, 2, []int{3, 5}},
				{secWarning, batch.WarnEmailUnverified, 2, []int{2, 4}},
			},
			wantWarned: 2,
		},
		{
			name: "an unknown status is counted, with no section",
			give: []batch.Result{
				{Line: 2, Status: "exploded"},
			},
			wantStatuses: map[string]int{"exploded": 1},
			wantWarnings: map[string]int{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agg := newReportAgg(cmpOr(tt.limit, DefaultLimit))
			for _, r := range tt.give {
				agg.add(r)
			}
			if agg.rows != len(tt.give) {
				t.Errorf("rows = %d, want %d", agg.rows, len(tt.give))
			}
			if fmt.Sprint(agg.statuses) != fmt.Sprint(tt.wantStatuses) {
				t.Errorf("statuses = %v, want %v", agg.statuses, tt.wantStatuses)
			}
			if fmt.Sprint(agg.warnings) != fmt.Sprint(tt.wantWarnings) {
				t.Errorf("warnings = %v, want %v", agg.warnings, tt.wantWarnings)
			}
			if agg.warnedLinked != tt.wantWarned {
				t.Errorf("warnedLinked = %d, want %d", agg.warnedLinked, tt.wantWarned)
			}
			var got []kind
			retry := 0
			for _, k := range agg.kinds {
				var sec reportSection
				sec.fill(k)
				var lines []int
				for _, r := range sec.Rows {
					lines = append(lines, r.Line)
				}
				if sec.More != k.count-len(lines) {
					t.Errorf("%s: More = %d, want %d", k.name, sec.More, k.count-len(lines))
				}
				got = append(got, kind{k.section, k.name, k.count, lines})
				retry += k.retryable
			}
			slices.SortFunc(got, func(a, b kind) int {
				if a.section != b.section {
					return a.section - b.section
				}
				return strings.Compare(a.name, b.name)
			})
			if fmt.Sprint(got) != fmt.Sprint(tt.wantKinds) {
				t.Errorf("kinds:\n got %v\nwant %v", got, tt.wantKinds)
			}
			if retry != tt.wantRetry {
				t.Errorf("retryable = %d, want %d", retry, tt.wantRetry)
			}
		})
	}
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// TestReportMemoryBounded feeds many rows of ever new kinds and checks that
// what the report keeps stays bounded.
func TestReportMemoryBounded(t *testing.T) {
	const n = 20_000
	agg := newReportAgg(DefaultLimit)
	for i := range n {
		agg.add(batch.Result{
			Line:    n - i, // lowest lines last: every row displaces one
			Status:  batch.StatusInvalid,
			Error:   fmt.Sprintf("field_%d: message %d", i, i),
			Warning: fmt.Sprintf("warning_%d", i),
		})
		agg.add(batch.Result{Line: n - i, Status: batch.Status(fmt.Sprintf("status_%d", i))})
	}
	kept := 0
	for _, k := range agg.kinds {
		if len(k.sample) > DefaultLimit {
			t.Fatalf("kind %q keeps %d rows", k.name, len(k.sample))
		}
		kept += len(k.sample)
	}
	if len(agg.kinds) > 2*(reportMaxKinds+1) || len(agg.statuses) > reportMaxKinds+1 || len(agg.warnings) > reportMaxKinds+1 {
		t.Fatalf("kinds %d, statuses %d, warnings %d: not bounded", len(agg.kinds), len(agg.statuses), len(agg.warnings))
	}
	other := agg.kinds[kindKey{secInvalid, otherKind}]
	if other == nil || other.count != n-reportMaxKinds {
		t.Fatalf("other invalid kind = %+v, want %d rows", other, n-reportMaxKinds)
	}
	// The other kind keeps the lowest lines of all it saw.
	var sec reportSection
	sec.fill(other)
	if sec.Rows[0].Line != 1 || sec.Rows[len(sec.Rows)-1].Line != DefaultLimit {
		t.Errorf("other kind keeps lines %d..%d, want 1..%d", sec.Rows[0].Line, sec.Rows[len(sec.Rows)-1].Line, DefaultLimit)
	}
	if agg.statuses[otherKind] != n-(reportMaxKinds-1) { // "invalid" takes one place
		t.Errorf("other statuses = %d", agg.statuses[otherKind])
	}
	t.Logf("%d rows: %d kinds, %d rows kept", 2*n, len(agg.kinds), kept)
}

func TestReportEscapesEverything(t *testing.T) {
	const script = `<script>alert(1)</script>`
	out := renderReport(t, Info{
		Title:   "Report </title>" + script,
		Input:   `pairs<img src=x onerror=alert(2)>.csv`,
		Results: `"><svg onload=alert(3)>`,
		DryRun:  true, Verify: true,
	},
		batch.Result{Line: 2, Primary: "auth0|" + script, Secondary: "github|1", Status: batch.StatusPlanned, Warning: batch.WarnEmailUnverified},
		batch.Result{Line: 3, Primary: "auth0|x", Secondary: `github|"><img src=x onerror=alert(4)>`, Status: batch.StatusInvalid,
			Error: `secondary_user_id: provider "` + script + `" is not a known identity provider`},
		batch.Result{Line: 4, Primary: "auth0|y", Secondary: "github|2", Status: batch.StatusFailed, HTTPStatus: 400,
			ErrorCode: `bad<script>`, Error: script},
		batch.Result{Line: 5, Primary: "auth0|z", Secondary: "github|3", Status: `<b>odd</b>`, Warning: `<i>w</i>`},
	)
	// No element comes from the data; the text stays text.
	for _, bad := range []string{"<script", "<img", "<svg", "<b>odd", "<i>w", "ZgotmplZ"} {
		if c := strings.Count(strings.ToLower(out), strings.ToLower(bad)); c > 0 {
			t.Errorf("report contains %q %d times", bad, c)
		}
	}
	if c := strings.Count(out, "</title>"); c != 1 {
		t.Errorf("report closes the title %d times", c)
	}
	for _, want := range []string{
		"auth0|&lt;script&gt;alert(1)&lt;/script&gt;",
		"github|&#34;&gt;&lt;img src=x onerror=alert(4)&gt;",
		"HTTP 400 bad&lt;script&gt;",
		"&lt;b&gt;odd&lt;/b&gt;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestReportShowsHiddenCharacters(t *testing.T) {
	out := renderReport(t, Info{},
		batch.Result{Line: 2, Primary: "auth0|abc\u202Efdp.exe", Secondary: "github|\u200b1", Status: batch.StatusInvalid, Error: "primary_user_id: contains control characters"},
		batch.Result{Line: 3, Primary: "auth0|\xff\xfe", Secondary: "github|1", Status: batch.StatusInvalid, Error: "primary_user_id: is not valid UTF-8"},
	)
	// html/template writes + as &#43;.
	for _, want := range []string{"auth0|abc[U&#43;202E]fdp.exe", "github|[U&#43;200B]1", "auth0|[FF][FE]"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.ContainsAny(out, "\u202E\u200b") {
		t.Error("report carries the raw characters")
	}
}

func TestReportCutsLongText(t *testing.T) {
	long := "auth0|" + strings.Repeat("a", 10_000)
	out := renderReport(t, Info{}, batch.Result{Line: 2, Primary: long, Secondary: "github|1", Status: batch.StatusSkipped, Error: "duplicate of line 1"})
	if strings.Contains(out, strings.Repeat("a", reportMaxText)) {
		t.Error("a long id is shown whole")
	}
	if !strings.Contains(out, "auth0|"+strings.Repeat("a", reportMaxText-len("auth0|"))+"…") {
		t.Error("a long id is not cut with an ellipsis")
	}
}

func TestReportHasNoSecrets(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhdXRoMHwxMjMifQ.c2lnbmF0dXJl"
	out := renderReport(t, Info{DryRun: false, Verify: true},
		batch.Result{Line: 2, Primary: "auth0|1", Secondary: "github|1", Status: batch.StatusLinked, HTTPStatus: 201, Attempts: 1},
		batch.Result{Line: 3, Primary: "auth0|2", Status: batch.StatusInvalid, Error: "link_with: is not a JWT (want three base64url parts joined by '.')"},
		// Results never carry a token; if one ever did, the report drops it.
		batch.Result{Line: 4, Primary: "auth0|3", Secondary: jwt, Status: batch.StatusFailed, HTTPStatus: 400, ErrorCode: "invalid_body",
			Error: "Payload validation error: link_with " + jwt},
	)
	if strings.Contains(out, "eyJ") {
		t.Error("the report contains a JWT")
	}
	if !strings.Contains(out, jwtRemark) {
		t.Errorf("the report does not say %q", jwtRemark)
	}
}

func TestReportRendersSummaryAndAttention(t *testing.T) {
	tests := []struct {
		name     string
		info     Info
		give     []batch.Result
		want     []string
		wantNot  []string
		wantTone string
	}{
		{
			name:     "clean live run",
			info:     Info{Input: "/data/pairs.csv", Verify: true, Generated: time.Date(2026, 5, 12, 14, 30, 0, 0, time.UTC)},
			give:     []batch.Result{{Line: 2, Primary: "auth0|1", Secondary: "github|1", Status: batch.StatusLinked}},
			want:     []string{"<title>linkbatch run report: pairs.csv (2026-05-12)</title>", "2026-05-12 14:30 UTC", "No problems and no warnings.", `data-total="linked">1<`, `data-total="email_unverified">0<`},
			wantTone: "ok",
		},
		{
			name:     "dry run without verify",
			info:     Info{Input: "-", DryRun: true},
			give:     []batch.Result{{Line: 2, Status: batch.StatusPlanned}},
			want:     []string{"linkbatch dry run report: standard input", "The users were not read"},
			wantNot:  []string{`data-total="email_unverified"`},
			wantTone: "warn",
		},
		{
			name: "dry run with warnings and problems",
			info: Info{DryRun: true, Verify: true},
			give: []batch.Result{
				{Line: 2, Status: batch.StatusPlanned, Warning: batch.WarnEmailUnverified},
				{Line: 3, Status: batch.StatusInvalid, Error: "primary_user_id: no such user in the tenant"},
			},
			want:     []string{"1 row is invalid or failed", "1 pair has an email warning, and a run would link them", "account-takeover", `data-total="invalid">1<`},
			wantTone: "bad",
		},
		{
			name: "an interrupted run",
			info: Info{Verify: true, Summary: &batch.Summary{Rows: 10, Remaining: 9, Requests: 3, RateLimited: 1, Retries: 2, Elapsed: 1500 * time.Millisecond}},
			give: []batch.Result{{Line: 2, Status: batch.StatusLinked, Warning: batch.WarnEmailMismatch}},
			want: []string{"9 input rows have no result yet", "--resume", "1 linked pair had an email warning",
				"<dt>requests sent</dt><dd>3</dd>", "<dt>429 answers</dt><dd>1</dd>", "<dt>elapsed</dt><dd>1.5s</dd>"},
			wantTone: "bad",
		},
		{
			name:     "an empty results file",
			info:     Info{Verify: true},
			want:     []string{`data-total="rows">0<`, "The results file has no rows."},
			wantTone: "ok",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := renderReport(t, tt.info, tt.give...)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("report lacks %q", w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(out, w) {
					t.Errorf("report has %q", w)
				}
			}
			if want := `class="banner ` + tt.wantTone + `"`; !strings.Contains(out, want) {
				t.Errorf("report lacks %s", want)
			}
			if strings.Contains(out, "<script") || strings.Contains(out, "ZgotmplZ") {
				t.Error("report has a script or a rejected value")
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestReportErrors(t *testing.T) {
	err := Write(&bytes.Buffer{}, strings.NewReader("line,status\nx,planned\n"), Info{})
	if err == nil || !strings.Contains(err.Error(), "bad line number") {
		t.Errorf("bad results: err = %v", err)
	}
	err = Write(&bytes.Buffer{}, strings.NewReader("primary_user_id\nauth0|1\n"), Info{})
	if err == nil || !strings.Contains(err.Error(), `no "line" column`) {
		t.Errorf("no line column: err = %v", err)
	}
	err = Write(failWriter{}, resultsFile(t, batch.Result{Line: 2, Status: batch.StatusPlanned}), Info{})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("failing writer: err = %v", err)
	}
}

// chromium returns the path of a Chromium browser, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-headless", "chromium-browser", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestReportInBrowser opens a report in headless Chromium, offline, and
// checks the page it builds. Skipped when Chromium is not installed.
func TestReportInBrowser(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("chromium is not installed")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var rs []batch.Result
	for i := range 30 {
		rs = append(rs, batch.Result{Line: 2 + i, Primary: fmt.Sprintf("auth0|%024d", i), Secondary: fmt.Sprintf("github|%d", i), Status: batch.StatusPlanned})
	}
	rs[3].Warning = batch.WarnEmailUnverified
	rs[4].Warning = batch.WarnEmailMismatch
	rs[5].Status, rs[5].Error = batch.StatusInvalid, `connection_id: "con_x" is not a connection id`
	rs[6].Status, rs[6].Error = batch.StatusSkipped, "duplicate of line 2"
	rs[7].Primary, rs[7].Status, rs[7].Error = "auth0|<script>alert(1)</script>", batch.StatusInvalid, "primary_user_id: contains control characters"
	rs[8].Secondary, rs[8].SecondaryProvider = "10774", "google-oauth2"
	rs[4].PrimaryEmail, rs[4].SecondaryEmail = "jane@example.com", "jd@example.org"
	emails := NewEmails(0)
	for _, r := range rs {
		emails.Add(r)
	}
	info := Info{Input: "pairs.csv", DryRun: true, Verify: true, Tenant: "acme.eu.auth0.com",
		InputSHA256: strings.Repeat("0f", 32), Version: "v9.9.9", Flags: []string{"--dry-run", "--verify"}, Emails: emails}
	var buf bytes.Buffer
	if err := Write(&buf, resultsFile(t, rs...), info); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1200,1600"}
		cmd := exec.CommandContext(ctx, bin, append(base, append(args, "file://"+page)...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", bin, err, stderr.Bytes())
		}
		return stdout.String()
	}
	dom := run("--dump-dom")
	totals := map[string]string{"rows": "30", "planned": "27", "invalid": "2", "skipped": "1", "email_unverified": "1", "email_mismatch": "1"}
	for label, n := range totals {
		re := regexp.MustCompile(`data-total="` + label + `"[^>]*>` + n + `<`)
		if !re.MatchString(dom) {
			t.Errorf("the page does not show %s = %s", label, n)
		}
	}
	for _, want := range []string{"linkbatch dry run report: pairs.csv", "Status breakdown", `connection_id: "…" is not a connection id`, "auth0|&lt;script&gt;alert(1)&lt;/script&gt;",
		"acme.eu.auth0.com", strings.Repeat("0f", 32), "v9.9.9", "--dry-run --verify",
		"Planned pairs", "27 planned pairs", "planned pairs 1–27", ">google-oauth2|10774<",
		"j***@example.com ↔ j***@example.org"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(dom, "<script") {
		t.Error("the page has a script element")
	}
	if strings.Contains(dom, "jane@") {
		t.Error("the page shows an email unmasked")
	}

	png := filepath.Join(dir, "report.png")
	run("--screenshot=" + png)
	if st, err := os.Stat(png); err == nil {
		t.Logf("screenshot: %d bytes", st.Size())
	} else {
		t.Logf("no screenshot: %v", err)
	}
}

func TestReportThousands(t *testing.T) {
	tests := []struct {
		give int
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {-1234567, "-1,234,567"}, {1000000, "1,000,000"}}
	for _, tt := range tests {
		if got := thousands(tt.give); got != tt.want {
			t.Errorf("thousands(%d) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
