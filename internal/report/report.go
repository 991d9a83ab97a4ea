// Package report writes the HTML report of a results file for a reviewer:
// totals, a chart, what the email warnings mean and the first rows of each
// kind of problem. It owns the page, its text and its escaping; it reads
// results only through batch.ReadResults and must not know how rows are
// linked, the tenant, or the command's flags (its caller fills Info).
package report

import (
	"github.com/linkbatch/linkbatch/batch"

	"bufio"
	"cmp"
	"container/heap"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultLimit is how many rows a report lists for each kind of problem
// when Info.Limit is not set.
const DefaultLimit = 20

const (
	// reportMaxKinds bounds the distinct kinds a report keeps per section
	// (and the distinct statuses and warnings it counts); further kinds
	// are counted together under one "other" kind.
	reportMaxKinds = 40
	// reportMaxText bounds, in characters, an id or a message shown.
	reportMaxText = 160
)

// Info describes the run a report is about. Every field is optional.
type Info struct {
	// Title heads the page; the default names the kind of run and the input.
	Title string
	// Input and Results name the input and results files, as given.
	Input, Results string
	// Generated is when the report was made; the zero time leaves it out.
	Generated time.Time
	// DryRun is the run's --dry-run; Verify says the users were read
	// (--verify or --require-verified-email), so that email warnings are
	// known.
	DryRun, Verify bool
	// Summary, when the report is written by the run itself, adds the
	// run's requests, rate-limit answers, retries, elapsed time, and the
	// rows it left without a result. Its counts cover this run only; the
	// report's counts come from the results file.
	Summary *batch.Summary
	// Limit is how many rows are listed for each kind of problem, those
	// with the lowest line numbers; 0 means DefaultLimit.
	Limit int
	// Tenant is the tenant's domain the run read or linked in, or
	// "simulated"; empty for a dry run that read nothing.
	Tenant string
	// InputSHA256 is the hex SHA-256 of the input's bytes.
	InputSHA256 string
	// Version is linkbatch's version.
	Version string
	// Flags are the command's flags as given, secrets left out by the
	// caller ("--dry-run", "--workers=8"); as a safety net, the value of a
	// flag whose name says secret, token, password or key is hidden.
	Flags []string
	// Emails, when set, holds the two users' emails of the rows with an
	// email warning (see NewEmails); they are shown masked
	// ("j***@example.com") unless ShowEmails is set.
	Emails     *Emails
	ShowEmails bool
	// PairsLimit is how many pairs (planned or linked) the page lists, by
	// line, in pages of 500; the rest are counted, and listed in the
	// results file. 0 means DefaultPairsLimit.
	PairsLimit int
}

// DefaultPairsLimit is how many pairs a report lists when
// Info.PairsLimit is not set.
const DefaultPairsLimit = 5000

// pairsPage is the number of pairs in one folded page of the list.
const pairsPage = 500

// Write reads a results file (as written by ResultWriter) from
// results and writes to w a self-contained HTML page about it for a
// reviewer: what ties it to a run (tenant, input and its SHA-256, version,
// flags), totals by status and warning, a status chart, what the email
// warnings mean, the first rows of each kind of problem (each kind of
// invalid row, each failure, skipped and already linked rows, each warning,
// with the two users' emails when Info.Emails has them), with their line
// numbers, and the planned or linked pairs themselves (the first
// Info.PairsLimit by line, in folded pages of 500). The page has no script
// and loads nothing.
//
// The results are read as a stream: memory stays bounded whatever their
// number: counts, PairsLimit pairs, plus Limit rows for each of at most 40 kinds per section
// (rarer kinds beyond those are counted together as "other"), with long ids
// and messages cut. Everything taken from the file is HTML-escaped; control and
// invisible formatting characters are shown as U+XXXX and anything shaped
// like a JWT is removed.
//
// Write returns an error wrapping ReadResults' when the results do not
// parse, or the writer's. It is safe to call concurrently on distinct
// writers and readers.
func Write(w io.Writer, results io.Reader, info Info) error {
	limit := info.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	agg := newReportAgg(limit)
	if info.PairsLimit > 0 {
		agg.pairLimit = info.PairsLimit
	}
	if err := batch.ReadResults(results, func(r batch.Result) error { agg.add(r); return nil }); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	bw := bufio.NewWriter(w)
	if err := reportTemplate.Execute(bw, agg.page(info)); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// Report sections, in page order after the warnings.
const (
	secInvalid = iota
	secFailed
	secSkipped
	secAlreadyLinked
	secWarning
)

// reportAgg counts results and keeps, for each kind of problem, the rows
// with the lowest line numbers. It is not safe for concurrent use.
type reportAgg struct {
	limit    int
	rows     int
	statuses map[string]int
	warnings map[string]int
	// warnedLinked counts linked rows with a warning.
	warnedLinked int
	kinds        map[kindKey]*reportKind
	perSec       map[int]int // kinds per section
	// pairs keeps the planned and linked rows with the lowest lines.
	pairs     reportKind
	pairLimit int
}

type kindKey struct {
	section int
	name    string
}

type reportKind struct {
	kindKey
	count     int
	retryable int
	sample    rowHeap
}

func newReportAgg(limit int) *reportAgg {
	return &reportAgg{
		limit:     limit,
		pairLimit: DefaultPairsLimit,
		statuses:  map[string]int{},
		warnings:  map[string]int{},
		kinds:     map[kindKey]*reportKind{},
		perSec:    map[int]int{},
	}
}

// otherKind names the kind that collects what does not fit in bounded maps.
const otherKind = "other"

func (a *reportAgg) add(r batch.Result) {
	a.rows++
	bump(a.statuses, string(r.Status))
	if r.Warning != "" {
		bump(a.warnings, r.Warning)
		if r.Status == batch.StatusLinked {
			a.warnedLinked++
		}
		a.kind(secWarning, r.Warning).add(r, a.limit)
	}
	switch r.Status {
	case batch.StatusPlanned, batch.StatusLinked:
		a.pairs.add(r, a.pairLimit)
	case batch.StatusInvalid:
		a.kind(secInvalid, invalidKind(r.Error)).add(r, a.limit)
	case batch.StatusFailed:
		a.kind(secFailed, failedKind(r)).add(r, a.limit)
	case batch.StatusSkipped:
		a.kind(secSkipped, string(batch.StatusSkipped)).add(r, a.limit)
	case batch.StatusAlreadyLinked:
		a.kind(secAlreadyLinked, string(batch.StatusAlreadyLinked)).add(r, a.limit)
	}
}

// bump counts key in m, or under otherKind once m is full.
func bump(m map[string]int, key string) {
	if _, ok := m[key]; !ok && len(m) >= reportMaxKinds {
		key = otherKind
	}
	m[key]++
}

func (a *reportAgg) kind(section int, name string) *reportKind {
	key := kindKey{section, name}
	if k, ok := a.kinds[key]; ok {
		return k
	}
	if a.perSec[section] >= reportMaxKinds {
		key.name = otherKind
		if k, ok := a.kinds[key]; ok {
			return k
		}
	}
	k := &reportKind{kindKey: key}
	a.kinds[key] = k
	a.perSec[section]++
	return k
}

func (k *reportKind) add(r batch.Result, limit int) {
	k.count++
	if r.Retryable {
		k.retryable++
	}
	if len(k.sample) == limit {
		if r.Line >= k.sample[0].Line {
			return
		}
		heap.Pop(&k.sample)
	}
	heap.Push(&k.sample, reportRow{
		Line:      r.Line,
		Primary:   shown(r.Primary),
		Secondary: shown(secondaryID(r)),
		Status:    shown(string(r.Status)),
		Warning:   shown(r.Warning),
		Detail:    shown(r.Error),
		Retryable: r.Retryable,
	})
}

// secondaryID returns the secondary as "provider|user_id": a bare user_id
// gets the provider its row named.
func secondaryID(r batch.Result) string {
	if r.SecondaryProvider == "" || r.Secondary == "" || strings.HasPrefix(r.Secondary, r.SecondaryProvider+"|") {
		return r.Secondary
	}
	return r.SecondaryProvider + "|" + r.Secondary
}

// rowHeap is a max-heap by line: the first row is the one to drop when a
// lower line comes.
type rowHeap []reportRow

func (h rowHeap) Len() int           { return len(h) }
func (h rowHeap) Less(i, j int) bool { return h[i].Line > h[j].Line }
func (h rowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rowHeap) Push(x any)        { *h = append(*h, x.(reportRow)) }
func (h *rowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

var (
	quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"(?:\.\.\.)?`)
	numberRE = regexp.MustCompile(`\b(line|lines|column) \d+`)
	jwtRE    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*`)
)

// jwtRemark replaces a JWT in the text shown.
const jwtRemark = "[token removed]"

// invalidKind groups the messages of invalid rows: quoted values and line
// and column numbers are replaced, so that 'provider "x" is not known' on
// many lines is one kind.
func invalidKind(msg string) string {
	if msg == "" {
		return "(no message)"
	}
	msg = quotedRE.ReplaceAllString(msg, `"…"`)
	msg = numberRE.ReplaceAllString(msg, "$1 N")
	return shown(msg)
}

// failedKind groups failed rows by the API's answer.
func failedKind(r batch.Result) string {
	switch {
	case r.HTTPStatus != 0 && r.ErrorCode != "":
		return "HTTP " + strconv.Itoa(r.HTTPStatus) + " " + shown(r.ErrorCode)
	case r.HTTPStatus != 0:
		return "HTTP " + strconv.Itoa(r.HTTPStatus)
	}
	return "no answer from the API"
}

// shown makes s fit to show: JWT-shaped text removed, control and invisible
// formatting characters (which could reorder or hide text) and invalid
// UTF-8 written as U+XXXX, and cut to reportMaxText characters.
func shown(s string) string {
	if strings.Contains(s, "eyJ") {
		s = jwtRE.ReplaceAllString(s, jwtRemark)
	}
	var b strings.Builder
	n := 0
	for i, c := range s {
		if n == reportMaxText {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case c == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, "[%02X]", s[i])
		case unicode.IsControl(c) || unicode.Is(unicode.Cf, c):
			fmt.Fprintf(&b, "[%U]", c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// The page model.
type (
	reportPage struct {
		Title, Heading string
		Input, Results string
		Generated      string
		Mode           string
		Rows           int
		Tone           string // ok, warn or bad
		Attention      []string
		Cards          []reportCard
		Bars           []reportBar
		WarningBars    []reportBar
		Warnings       []reportSection
		Problems       []reportSection
		Run            []reportFact
		Limit          int
		Verified       bool
		Audit          []reportFact
		Pairs          pairsList
	}
	reportCard struct {
		Label, Class, Anchor string
		Count                int
	}
	reportBar struct {
		Label, Class, Width, Pct string
		Count                    int
	}
	reportSection struct {
		ID, Title, Kind, Class string
		Explain                []string
		Count, Retryable       int
		Rows                   []reportRow
		More                   int
		Details                bool // some row has a detail to show
		Statuses               bool // show each row's status
		Emails                 bool // some row has its emails to show
	}
	reportRow struct {
		Line                                        int
		Primary, Secondary, Status, Warning, Detail string
		Emails                                      string // with an email warning, when known
		Retryable                                   bool
	}
	reportFact struct{ Label, Value string }
	pairsList  struct {
		Title         string // "planned" or "linked"
		Count, More   int
		Pages         []pairsPageModel
		Warnings      bool
		ResultsFile   string
		PerPage, Most int
	}
	pairsPageModel struct {
		From, To int // 1-based positions in the list
		Open     bool
		Rows     []reportRow
	}
)

// warningText explains each warning to a reviewer.
var warningText = map[string][]string{
	batch.WarnEmailUnverified: {
		"At least one of the two users has an email address that nobody proved to own. Some sign-up paths and identity providers accept any address without checking it, so an attacker can create an account carrying a victim's address.",
		"Linking on such an address hands the attacker a way into the victim's merged account (or the victim's into the attacker's). Auth0's account-linking documentation warns against linking accounts on unverified emails for exactly this reason: it is an account-takeover path.",
		"Confirm each pair by other means before linking, or run with --require-verified-email, which refuses these rows.",
	},
	batch.WarnEmailMismatch: {
		"The two users' email addresses differ, or one of them has none. The pair may still be one person (a work and a personal address), but nothing in the tenant shows it.",
		"If the pair in the input is wrong, linking gives one person's sign-in access to another person's account, and the secondary's metadata is discarded. Check where the pair came from before linking.",
	},
}

var warningClass = map[string]string{batch.WarnEmailUnverified: "w-unverified", batch.WarnEmailMismatch: "w-mismatch"}

// page builds the page model: its heading, the problems, the totals and
// chart, the warnings, what needs attention and the run's figures.
func (a *reportAgg) page(info Info) reportPage {
	p := reportPage{Rows: a.rows, Limit: a.limit, Verified: info.Verify || len(a.warnings) > 0}
	p.heading(info)
	first := a.problems(&p)
	a.totals(&p, first)
	a.warningSections(&p)
	a.attention(&p, info)
	p.Run = runFacts(info.Summary)
	p.Audit = auditFacts(info)
	p.Pairs = a.pairsList(info)
	if info.Emails != nil {
		for i := range p.Warnings {
			for j := range p.Warnings[i].Rows {
				row := &p.Warnings[i].Rows[j]
				row.Emails = info.Emails.shown(row.Line, info.ShowEmails)
				p.Warnings[i].Emails = p.Warnings[i].Emails || row.Emails != ""
			}
		}
	}
	return p
}

// pairsList lists the pairs kept, in folded pages.
func (a *reportAgg) pairsList(info Info) pairsList {
	k := &a.pairs
	l := pairsList{Title: "linked", Count: k.count, ResultsFile: shown(info.Results), PerPage: pairsPage, Most: a.pairLimit}
	if info.DryRun {
		l.Title = "planned"
	}
	rows := slices.SortedFunc(slices.Values(k.sample), func(x, y reportRow) int { return cmp.Compare(x.Line, y.Line) })
	l.More = k.count - len(rows)
	l.Warnings = slices.ContainsFunc(rows, func(r reportRow) bool { return r.Warning != "" })
	for from := 0; from < len(rows); from += pairsPage {
		to := min(from+pairsPage, len(rows))
		l.Pages = append(l.Pages, pairsPageModel{From: from + 1, To: to, Open: from == 0, Rows: rows[from:to]})
	}
	return l
}

// auditFacts lists what an auditor needs to tie the report to a run: the
// tenant, the input and its SHA-256, the version and the flags.
func auditFacts(info Info) []reportFact {
	var out []reportFact
	add := func(label, value string) {
		if value != "" {
			out = append(out, reportFact{label, value})
		}
	}
	tenant := info.Tenant
	if tenant == "" && info.DryRun && !info.Verify {
		tenant = "none read (a dry run without --verify)"
	}
	add("tenant", shown(tenant))
	input := info.Input
	if input == "-" {
		input = "standard input"
	}
	add("input", shown(input))
	add("input SHA-256", shown(info.InputSHA256))
	add("results", shown(info.Results))
	add("linkbatch version", shown(info.Version))
	if len(info.Flags) > 0 {
		flags := make([]string, len(info.Flags))
		for i, f := range info.Flags {
			flags[i] = shown(hideSecretFlag(f))
		}
		add("flags", strings.Join(flags, " "))
	}
	return out
}

// secretFlagRE matches the name of a flag whose value must not be shown.
var secretFlagRE = regexp.MustCompile(`(?i)secret|token|password|passwd|key`)

// hideSecretFlag hides the value of a flag "--name=value" whose name says
// it is a secret.
func hideSecretFlag(f string) string {
	name, _, hasValue := strings.Cut(f, "=")
	if hasValue && secretFlagRE.MatchString(name) {
		return name + "=[hidden]"
	}
	return f
}

// heading sets the page's title, heading, mode and file names.
func (p *reportPage) heading(info Info) {
	input := info.Input
	if input == "-" {
		input = "standard input"
	}
	p.Input, p.Results = shown(input), shown(info.Results)
	kind := "run"
	switch {
	case info.DryRun && info.Verify:
		kind, p.Mode = "dry run", "Dry run with --verify: nothing was linked; both users of each pair were read from the tenant."
	case info.DryRun:
		kind, p.Mode = "dry run", "Dry run: nothing was linked and the tenant was not read."
	default:
		p.Mode = "Run: link requests were sent to the tenant."
	}
	p.Heading = shown(info.Title)
	if p.Heading == "" {
		p.Heading = "linkbatch " + kind + " report"
		if input != "" {
			p.Heading += ": " + shown(filepath.Base(input))
		}
	}
	p.Title = p.Heading
	if !info.Generated.IsZero() {
		p.Generated = info.Generated.Format("2006-01-02 15:04 MST")
		p.Title += " (" + info.Generated.Format("2006-01-02") + ")"
	}
}

// problems adds each section's kinds, the most frequent first, and returns
// the id of the first section of each status.
func (a *reportAgg) problems(p *reportPage) map[string]string {
	kinds := slices.SortedFunc(maps.Values(a.kinds), func(x, y *reportKind) int {
		return cmp.Or(cmp.Compare(x.section, y.section), cmp.Compare(y.count, x.count), cmp.Compare(x.name, y.name))
	})
	first := map[string]string{} // status -> id of its first section
	for i, k := range kinds {
		sec, ok := problemSection(k)
		if !ok {
			continue // a warning: listed with its explanation
		}
		sec.ID = "k" + strconv.Itoa(i)
		sec.fill(k)
		if _, ok := first[sec.Kind]; !ok {
			first[sec.Kind] = sec.ID
		}
		p.Problems = append(p.Problems, sec)
	}
	return first
}

// problemSection returns the section of a kind of problem; false for a
// warning.
func problemSection(k *reportKind) (reportSection, bool) {
	sec := reportSection{Title: k.name, Count: k.count, Retryable: k.retryable}
	switch k.section {
	case secInvalid:
		sec.Kind, sec.Class = string(batch.StatusInvalid), "s-invalid"
		if k.name == otherKind {
			sec.Title = "other messages"
		}
	case secFailed:
		sec.Kind, sec.Class = string(batch.StatusFailed), "s-failed"
	case secSkipped:
		sec.Kind, sec.Class, sec.Title = string(batch.StatusSkipped), "s-skipped", "exact duplicates of an earlier row"
	case secAlreadyLinked:
		sec.Kind, sec.Class, sec.Title = string(batch.StatusAlreadyLinked), "s-already_linked", "the secondary is already one of the primary's identities"
	default: // secWarning
		return sec, false
	}
	return sec, true
}

// totals adds the cards and the chart: statuses in the order of
// batch.Statuses, then by name.
func (a *reportAgg) totals(p *reportPage, first map[string]string) {
	statuses := slices.SortedFunc(maps.Keys(a.statuses), func(x, y string) int {
		return cmp.Or(cmp.Compare(rank(x), rank(y)), cmp.Compare(x, y))
	})
	p.Cards = append(p.Cards, reportCard{Label: "rows", Class: "c-rows", Count: a.rows})
	for _, s := range statuses {
		p.Cards = append(p.Cards, reportCard{Label: shown(s), Class: "c-" + statusClass(s), Count: a.statuses[s], Anchor: first[s]})
		p.Bars = append(p.Bars, bar(shown(s), "s-"+statusClass(s), a.statuses[s], a.rows))
	}
}

// warningSections adds the warnings: both known ones whenever the users
// were read, zero or not.
func (a *reportAgg) warningSections(p *reportPage) {
	warnings := slices.Collect(maps.Keys(a.warnings))
	if p.Verified {
		for _, w := range []string{batch.WarnEmailUnverified, batch.WarnEmailMismatch} {
			if !slices.Contains(warnings, w) {
				warnings = append(warnings, w)
			}
		}
	}
	slices.SortFunc(warnings, func(x, y string) int { return cmp.Or(cmp.Compare(wrank(x), wrank(y)), cmp.Compare(x, y)) })
	for i, w := range warnings {
		cls := cmp.Or(warningClass[w], "w-other")
		sec := reportSection{ID: "w" + strconv.Itoa(i), Title: shown(w), Class: cls, Explain: warningText[w], Count: a.warnings[w], Statuses: true}
		if k := a.kinds[kindKey{secWarning, w}]; k != nil {
			sec.fill(k)
		}
		p.Warnings = append(p.Warnings, sec)
		p.Cards = append(p.Cards, reportCard{Label: sec.Title, Class: "c-" + cls, Count: sec.Count, Anchor: sec.ID})
		p.WarningBars = append(p.WarningBars, bar(sec.Title, cls, sec.Count, a.rows))
	}
}

// attention sets what needs attention and the page's tone.
func (a *reportAgg) attention(p *reportPage, info Info) {
	bad := a.statuses[string(batch.StatusInvalid)] + a.statuses[string(batch.StatusFailed)]
	if bad > 0 {
		p.Tone = "bad"
		p.Attention = append(p.Attention, fmt.Sprintf("%s %s invalid or failed: nothing was linked for them. See the problems below.", thousands(bad), plural(bad, "row is", "rows are")))
	}
	if msg := a.warningAttention(info.DryRun); msg != "" {
		p.Tone = cmp.Or(p.Tone, "warn")
		p.Attention = append(p.Attention, msg)
	}
	if info.Summary != nil && info.Summary.Remaining > 0 {
		p.Tone = "bad"
		n := info.Summary.Remaining
		p.Attention = append(p.Attention, fmt.Sprintf("%s input %s no result yet: the run stopped early. Run the same command with --resume.", thousands(n), plural(n, "row has", "rows have")))
	}
	if !p.Verified {
		p.Tone = cmp.Or(p.Tone, "warn")
		p.Attention = append(p.Attention, "The users were not read (no --verify): missing users, pairs already linked and email warnings are not known.")
	}
	p.Tone = cmp.Or(p.Tone, "ok")
	if len(p.Attention) == 0 {
		p.Attention = append(p.Attention, "No problems and no warnings.")
	}
}

// warningAttention says what the email warnings call for, or "".
func (a *reportAgg) warningAttention(dryRun bool) string {
	warned := 0
	for _, n := range a.warnings {
		warned += n
	}
	switch {
	case warned > 0 && dryRun:
		return fmt.Sprintf("%s %s an email warning, and a run would link them all the same: review them before linking, or run with --require-verified-email to refuse them.", thousands(warned), plural(warned, "pair has", "pairs have"))
	case a.warnedLinked > 0:
		return fmt.Sprintf("%s linked %s an email warning: check that each is one person.", thousands(a.warnedLinked), plural(a.warnedLinked, "pair had", "pairs had"))
	case warned > 0:
		return fmt.Sprintf("%s %s an email warning (none of them linked).", thousands(warned), plural(warned, "pair had", "pairs had"))
	}
	return ""
}

// runFacts lists the run's own figures, when the run writes the report.
func runFacts(s *batch.Summary) []reportFact {
	if s == nil {
		return nil
	}
	return []reportFact{
		{"input rows", thousands(s.Rows)},
		{"kept from an earlier run", thousands(s.Kept)},
		{"rows with no result", thousands(s.Remaining)},
		{"requests sent", thousands(int(s.Requests))},
		{"429 answers", thousands(int(s.RateLimited))},
		{"retries", thousands(int(s.Retries))},
		{"elapsed", s.Elapsed.Round(time.Millisecond).String()},
	}
}

// rank orders statuses on the page as batch.Statuses does; others follow.
func rank(status string) int {
	if i := slices.Index(batch.Statuses, batch.Status(status)); i >= 0 {
		return i
	}
	return len(batch.Statuses)
}

func wrank(w string) int {
	switch w {
	case batch.WarnEmailUnverified:
		return 0
	case batch.WarnEmailMismatch:
		return 1
	}
	return 2
}

// statusClass returns the CSS class suffix of a status: only known statuses
// get their own colour.
func statusClass(s string) string {
	if batch.Status(s).Known() {
		return s
	}
	return "other"
}

func bar(label, class string, n, total int) reportBar {
	pct, width := 0.0, 0.0
	if total > 0 {
		pct = 100 * float64(n) / float64(total)
	}
	if n > 0 {
		width = max(pct, 0.6) // keep a sliver visible
	}
	return reportBar{Label: label, Class: class, Count: n,
		Pct: strconv.FormatFloat(pct, 'f', 1, 64), Width: strconv.FormatFloat(width, 'f', 2, 64)}
}

// fill sets sec's rows to k's kept rows, by line.
func (sec *reportSection) fill(k *reportKind) {
	sec.Rows = slices.SortedFunc(slices.Values(k.sample), func(x, y reportRow) int { return cmp.Compare(x.Line, y.Line) })
	sec.More = k.count - len(sec.Rows)
	sec.Details = slices.ContainsFunc(sec.Rows, func(r reportRow) bool { return r.Detail != "" || r.Retryable })
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// thousands writes n with comma separators: 1,000,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
