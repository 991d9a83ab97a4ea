package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/linkbatch/linkbatch/batch"
)

// utf16LE encodes s as UTF-16LE with a byte order mark, as Excel's
// "Unicode text" does.
func utf16LE(s string) []byte {
	units := utf16.Encode([]rune("\ufeff" + s))
	b := make([]byte, 0, 2*len(units))
	for _, u := range units {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

// TestRunSpreadsheetExport: a spreadsheet's export (UTF-16, ';'-separated,
// its own column names) is read with --columns, and the report names the
// input's SHA-256 and the flags.
func TestRunSpreadsheetExport(t *testing.T) {
	dir := t.TempDir()
	content := utf16LE("Primary User ID;Secondary User ID;Note\r\nauth0|1;github|2;Zoë\r\nauth0|3;google-oauth2|4;\r\n")
	in := filepath.Join(dir, "export.txt")
	if err := os.WriteFile(in, content, 0o600); err != nil {
		t.Fatal(err)
	}
	out, html := filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.html")
	res := runLinkbatch(t, invocation{args: []string{"run", "--dry-run", "--in", in, "--out", out, "--report", html,
		"--columns", "primary=Primary User ID,secondary=Secondary User ID"}})
	if res.code != exitOK {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	if len(res.results) != 2 || res.results[2].Status != batch.StatusPlanned || res.results[3].Secondary != "google-oauth2|4" {
		t.Fatalf("results %+v", res.results)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	for _, want := range []string{hex.EncodeToString(sum[:]), "--columns=primary=Primary User ID,secondary=Secondary User ID", "--dry-run", "Planned pairs", "linkbatch version"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the report lacks %q", want)
		}
	}

	// Without --columns, the error shows what was read and the fix.
	res = runLinkbatch(t, invocation{args: []string{"run", "--dry-run", "--in", in, "--out", filepath.Join(dir, "r2.csv")}})
	for _, want := range []string{"header has no primary_user_id column", "UTF-16LE, split on ',' (comma)) has 1 column", "the columns look separated by ';' (semicolon)",
		"column \"Primary User ID\" looks meant as primary_user_id", "--delimiter ';' --columns 'primary=Primary User ID,secondary=Secondary User ID'"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
		}
	}
	if strings.Count(res.stderr, "header has no primary_user_id column") != 1 {
		t.Errorf("the error is not printed once:\n%s", res.stderr)
	}
}

// TestReportEmails: with --verify the report shows the emails behind an
// email warning, masked unless --report-show-emails; the results file and
// the log never hold them.
func TestReportEmails(t *testing.T) {
	if testing.Short() {
		t.Skip("waits on the simulated tenant")
	}
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("primary_user_id,secondary_user_id\n")
	for i := range 12 { // line 4 gets an unverified email, line 6 a different one
		fmt.Fprintf(&b, "auth0|p%02d,github|s%02d\n", i, i)
	}
	in := writeRaw(t, b.String())
	for _, show := range []bool{false, true} {
		out, html := filepath.Join(dir, fmt.Sprintf("%v.csv", show)), filepath.Join(dir, fmt.Sprintf("%v.html", show))
		args := []string{"run", "--simulate", "--dry-run", "--verify", "--in", in, "--out", out, "--report", html}
		if show {
			args = append(args, "--report-show-emails")
		}
		res := runLinkbatch(t, invocation{args: args})
		if res.code != exitOK {
			t.Fatalf("exit %d\n%s", res.code, res.stderr)
		}
		if res.results[4].Warning != batch.WarnEmailUnverified || res.results[6].Warning != batch.WarnEmailMismatch {
			t.Fatalf("warnings %q %q; the simulated tenant changed", res.results[4].Warning, res.results[6].Warning)
		}
		page, err := os.ReadFile(html)
		if err != nil {
			t.Fatal(err)
		}
		emails := regexp.MustCompile(`[^\s<>;]+@[^\s<>;]+`).FindAllString(string(page), -1)
		masked, plain := 0, 0
		for _, e := range emails {
			if strings.Contains(e, "***@") {
				masked++
			} else if strings.Contains(e, ".") && !strings.Contains(e, "auth0.com") {
				plain++
			}
		}
		if show && (plain < 2 || masked != 0) || !show && (masked < 2 || plain != 0) {
			t.Errorf("--report-show-emails=%v: %d masked and %d plain emails in the report: %q", show, masked, plain, emails)
		}
		if strings.Contains(res.resultsRaw, "@") || strings.Contains(res.stderr, "@") {
			t.Errorf("an email reached the results file or the log")
		}
	}
}
