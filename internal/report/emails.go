package report

import (
	"container/heap"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/linkbatch/linkbatch/batch"
)

// Emails keeps, for the report, the two users' email addresses of the rows
// with an email warning (batch.Result's PrimaryEmail and SecondaryEmail,
// set when the users were read): for each warning, those of the rows with
// the lowest lines, as many as the report lists, so that memory stays
// bounded. It is safe for concurrent use; its Add fits batch.Hooks.Result.
type Emails struct {
	mu    sync.Mutex
	limit int
	kept  map[string]*emailHeap // by warning
	byKey map[int]emailPair     // by line, the rows kept
}

type emailPair struct{ primary, secondary string }

type emailRow struct {
	line int
	emailPair
}

// emailHeap is a max-heap by line.
type emailHeap []emailRow

func (h emailHeap) Len() int           { return len(h) }
func (h emailHeap) Less(i, j int) bool { return h[i].line > h[j].line }
func (h emailHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *emailHeap) Push(x any)        { *h = append(*h, x.(emailRow)) }
func (h *emailHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// NewEmails returns an Emails that keeps limit rows per warning (0 means
// DefaultLimit): give it the Info.Limit of the report.
func NewEmails(limit int) *Emails {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return &Emails{limit: limit, kept: map[string]*emailHeap{}, byKey: map[int]emailPair{}}
}

// Add keeps r's emails when r has a warning and its line is among the
// lowest of its warning.
func (e *Emails) Add(r batch.Result) {
	if r.Warning == "" || (r.PrimaryEmail == "" && r.SecondaryEmail == "") {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.kept[r.Warning]
	if h == nil {
		if len(e.kept) >= reportMaxKinds {
			return
		}
		h = &emailHeap{}
		e.kept[r.Warning] = h
	}
	if h.Len() == e.limit {
		if r.Line >= (*h)[0].line {
			return
		}
		delete(e.byKey, heap.Pop(h).(emailRow).line)
	}
	p := emailPair{r.PrimaryEmail, r.SecondaryEmail}
	heap.Push(h, emailRow{r.Line, p})
	e.byKey[r.Line] = p
}

// shown returns the emails of the row at line as the report shows them:
// "primary ↔ secondary", each masked unless show; "" when not kept.
func (e *Emails) shown(line int, show bool) string {
	e.mu.Lock()
	p, ok := e.byKey[line]
	e.mu.Unlock()
	if !ok {
		return ""
	}
	f := func(s string) string {
		switch {
		case s == "":
			return "(no email)"
		case show:
			return shown(s)
		}
		return shown(MaskEmail(s))
	}
	return f(p.primary) + " ↔ " + f(p.secondary)
}

// MaskEmail hides an address's local part but its first character:
// "jane@example.com" gives "j***@example.com". Text without an '@' keeps
// only its first character.
func MaskEmail(s string) string {
	local, domain, ok := strings.Cut(s, "@")
	if local == "" {
		return "***@" + domain
	}
	_, size := utf8.DecodeRuneInString(local)
	masked := local[:size] + "***"
	if ok {
		masked += "@" + domain
	}
	return masked
}
