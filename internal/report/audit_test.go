package report

import (
	"fmt"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/batch"
)

func TestMaskEmail(t *testing.T) {
	tests := []struct{ give, want string }{
		{"jane@example.com", "j***@example.com"},
		{"Ölaf.x@example.org", "Ö***@example.org"},
		{"@example.com", "***@example.com"},
		{"not-an-email", "n***"},
	}
	for _, tt := range tests {
		if got := MaskEmail(tt.give); got != tt.want {
			t.Errorf("MaskEmail(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestReportAuditFacts(t *testing.T) {
	page := renderReport(t, Info{
		Input: "pairs.csv", Results: "out.csv", DryRun: true, Verify: true,
		Tenant: "acme.eu.auth0.com", InputSHA256: strings.Repeat("ab", 32), Version: "v1.4.0",
		Flags: []string{"--dry-run", "--verify", "--workers=8", "--client-secret=hunter2-very-secret", "--token=abc.def.ghi"},
	}, batch.Result{Line: 2, Primary: "auth0|1", Secondary: "github|2", Status: batch.StatusPlanned})
	for _, want := range []string{"acme.eu.auth0.com", strings.Repeat("ab", 32), "v1.4.0", "--dry-run --verify --workers=8 --client-secret=[hidden] --token=[hidden]"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, secret := range []string{"hunter2", "abc.def.ghi"} {
		if strings.Contains(page, secret) {
			t.Errorf("the page shows %q", secret)
		}
	}
	if page := renderReport(t, Info{DryRun: true}); !strings.Contains(page, "none read (a dry run without --verify)") {
		t.Error("a dry run without --verify does not say no tenant was read")
	}
}

func TestReportPairs(t *testing.T) {
	var rs []batch.Result
	for i := range 1300 {
		rs = append(rs, batch.Result{Line: 1301 - i, Primary: fmt.Sprintf("auth0|p%d", i), Secondary: fmt.Sprintf("%d", 1000+i), SecondaryProvider: "github", Status: batch.StatusPlanned})
	}
	rs = append(rs, batch.Result{Line: 5000, Primary: "auth0|x", Secondary: "github|y", Status: batch.StatusInvalid, Error: "x"})
	page := renderReport(t, Info{DryRun: true, Results: "out.csv", PairsLimit: 1200}, rs...)
	if got := strings.Count(page, `<details class="kind page"`); got != 3 {
		t.Errorf("the pairs are in %d pages, want 3 (1,200 by 500)", got)
	}
	if got := strings.Count(page, `<details class="kind page" open>`); got != 1 {
		t.Errorf("%d pages are open, want the first only", got)
	}
	for _, want := range []string{"1,300 planned pairs: the first 1,200 by input line are listed here", "the other 100 are in the results file",
		"planned pairs 1–500", "planned pairs 1,001–1,200",
		// line 2 is the last result given; the list goes by line
		"<td class=\"line\">2</td><td class=\"id\">auth0|p1299</td><td class=\"id\">github|2299</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(page, "auth0|p0<") { // line 1302: past the limit
		t.Error("the page lists a pair past the limit")
	}
	if strings.Count(page, ">auth0|x<") != 1 {
		t.Error("the invalid row is not listed once, under its problem")
	}

	linked := renderReport(t, Info{}, batch.Result{Line: 2, Primary: "auth0|1", Secondary: "github|2", Status: batch.StatusLinked})
	if !strings.Contains(linked, "Linked pairs") || !strings.Contains(linked, "pairs 1–1<") {
		t.Error("a run's report does not list its linked pairs")
	}
}

func TestReportEmails(t *testing.T) {
	rs := []batch.Result{
		{Line: 2, Primary: "auth0|1", Secondary: "github|2", Status: batch.StatusPlanned, Warning: batch.WarnEmailMismatch, PrimaryEmail: "jane@example.com", SecondaryEmail: "jd@example.org"},
		{Line: 3, Primary: "auth0|3", Secondary: "github|4", Status: batch.StatusPlanned, Warning: batch.WarnEmailUnverified, PrimaryEmail: "bob@example.com"},
	}
	for _, show := range []bool{false, true} {
		emails := NewEmails(0)
		for _, r := range rs {
			emails.Add(r)
		}
		page := renderReport(t, Info{DryRun: true, Verify: true, Emails: emails, ShowEmails: show}, rs...)
		want := []string{"j***@example.com ↔ j***@example.org", "b***@example.com ↔ (no email)"}
		hidden := []string{"jane@", "jd@", "bob@"}
		if show {
			want, hidden = []string{"jane@example.com ↔ jd@example.org", "bob@example.com ↔ (no email)"}, nil
		}
		for _, w := range want {
			if !strings.Contains(page, w) {
				t.Errorf("show=%v: the page lacks %q", show, w)
			}
		}
		for _, h := range hidden {
			if strings.Contains(page, h) {
				t.Errorf("show=%v: the page shows %q", show, h)
			}
		}
	}
}

// TestEmailsBounded: Emails keeps only the lowest lines of each warning.
func TestEmailsBounded(t *testing.T) {
	e := NewEmails(3)
	for line := 100; line >= 2; line-- {
		e.Add(batch.Result{Line: line, Warning: batch.WarnEmailMismatch, PrimaryEmail: "a@x", SecondaryEmail: "b@y"})
	}
	if len(e.byKey) != 3 {
		t.Fatalf("kept %d rows, want 3", len(e.byKey))
	}
	for _, line := range []int{2, 3, 4} {
		if e.shown(line, true) != "a@x ↔ b@y" {
			t.Errorf("line %d not kept", line)
		}
	}
}
