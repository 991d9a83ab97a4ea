package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap/zapcore"
)

// humanCore is the log format for a person at a terminal (--log-format
// human, the default when stderr is a terminal): one short line per entry,
// "15:04:05 WARN  message key=value ...", fields left out when zero or
// empty. A row that went well ("row" at info level) is logged only at debug
// level: the terminal shows the progress line and the problems, and the
// results file has every row. A row's line is made to fit the terminal's
// width (see fitHumanRow). It is safe for concurrent use.
type humanCore struct {
	zapcore.LevelEnabler
	out zapcore.WriteSyncer
	// width returns the terminal's width, 0 for none or unknown; nil: no
	// limit.
	width  func() int
	mu     *sync.Mutex
	fields []zapcore.Field
}

func newHumanCore(out zapcore.WriteSyncer, level zapcore.LevelEnabler, width func() int) *humanCore {
	return &humanCore{LevelEnabler: level, out: out, width: width, mu: &sync.Mutex{}}
}

// With returns a core that adds fields to every entry.
func (c *humanCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.fields = append(slices.Clip(c.fields), fields...)
	return &clone
}

// Check adds c to ce when the entry's level, a row's info taken as debug,
// is enabled.
func (c *humanCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(humanLevel(e)) {
		return ce.AddCore(e, c)
	}
	return ce
}

// humanLevel is the level an entry is shown at: a row that went well is
// a detail.
func humanLevel(e zapcore.Entry) zapcore.Level {
	if e.Message == "row" && e.Level == zapcore.InfoLevel {
		return zapcore.DebugLevel
	}
	return e.Level
}

// Write formats and writes one entry.
func (c *humanCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	all := append(slices.Clip(c.fields), fields...)
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range all {
		f.AddTo(enc)
	}
	var b strings.Builder
	b.WriteString(e.Time.Format("15:04:05"))
	fmt.Fprintf(&b, " %-5s ", strings.ToUpper(humanLevel(e).String()))
	if e.Message == "row" {
		width := 0
		if c.width != nil {
			if width = c.width(); width > 0 {
				width = max(width-utf8.RuneCountInString(b.String()), 1)
			}
		}
		b.WriteString(fitHumanRow(humanRowOf(enc.Fields), width))
	} else {
		b.WriteString(e.Message)
		seen := map[string]bool{}
		for _, f := range all {
			if seen[f.Key] {
				continue
			}
			seen[f.Key] = true
			writeHumanField(&b, f.Key, enc.Fields[f.Key])
		}
	}
	b.WriteByte('\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.out.Write([]byte(b.String()))
	return err
}

// humanRow is the text of a row's entry, in parts: "line 5: invalid  PRIMARY
// <- SECONDARY (PROVIDER)  warning W  [CODE]  ERROR".
type humanRow struct {
	head                         string // "line 5: invalid"
	primary, secondary, provider string // "" for none
	ids                          bool   // the row has ids to show
	rest                         string // the warning, code and error parts
}

func humanRowOf(f map[string]any) humanRow {
	r := humanRow{head: fmt.Sprintf("line %v: %v", f["line"], f["status"])}
	r.primary, r.secondary = fmt.Sprint(f["primary"]), fmt.Sprint(f["secondary"])
	r.ids = r.primary != "" || r.secondary != "" // a row that could not be parsed has neither
	r.primary, r.secondary = cmp.Or(r.primary, "(none)"), cmp.Or(r.secondary, "(none)")
	if p, ok := f["secondary_provider"]; ok {
		r.provider = fmt.Sprint(p)
	}
	var rest strings.Builder
	if w, ok := f["warning"]; ok {
		fmt.Fprintf(&rest, "  warning %v", w)
	}
	if code, ok := f["error_code"]; ok {
		fmt.Fprintf(&rest, "  [%v]", code)
	}
	if e, ok := f["error"]; ok && e != "" {
		fmt.Fprintf(&rest, "  %v", e)
	}
	r.rest = rest.String()
	return r
}

// text returns the row's line with its ids cut to at most maxID characters
// each (0: whole).
func (r humanRow) text(maxID int) string {
	var b strings.Builder
	b.WriteString(r.head)
	if r.ids {
		fmt.Fprintf(&b, "  %s <- %s", ellipsize(r.primary, maxID), ellipsize(r.secondary, maxID))
	}
	if r.provider != "" {
		fmt.Fprintf(&b, " (%s)", ellipsize(r.provider, maxID))
	}
	b.WriteString(r.rest)
	return b.String()
}

// minHumanID is the fewest characters an id is cut to: the provider and
// a few characters of the user_id's head and tail.
const minHumanID = 12

// fitHumanRow returns the row's line in fewer than width characters (0: no
// limit), if it can: first its ids are cut in the middle, keeping their
// heads (the provider) and tails, down to minHumanID characters; then what
// follows the status is cut at the end. An ellipsis marks each cut. The
// line's head, its number and status, is never cut, even when it alone is
// too wide (then all that follows it is left out).
func fitHumanRow(r humanRow, width int) string {
	line := r.text(0)
	full := utf8.RuneCountInString(line)
	if width <= 0 || full < width {
		return line
	}
	var ids []int // the lengths of the ids shown
	if r.ids {
		ids = append(ids, utf8.RuneCountInString(r.primary), utf8.RuneCountInString(r.secondary))
	}
	if r.provider != "" {
		ids = append(ids, utf8.RuneCountInString(r.provider))
	}
	// length is the line's length with its ids cut to maxID characters
	// each.
	length := func(maxID int) int {
		n := full
		for _, l := range ids {
			n -= l - min(l, maxID)
		}
		return n
	}
	for maxID := slices.Max(append(ids, 0)) - 1; maxID >= minHumanID; maxID-- {
		if length(maxID) < width {
			return r.text(maxID)
		}
	}
	runes := []rune(r.text(minHumanID))
	if len(runes) < width {
		return string(runes)
	}
	if width-2 < utf8.RuneCountInString(r.head) {
		return r.head + "…"
	}
	return string(runes[:width-2]) + "…"
}

// ellipsize cuts s to n characters (0: no limit), keeping its head and
// tail around an ellipsis.
func ellipsize(s string, n int) string {
	r := []rune(s)
	if n <= 0 || len(r) <= n {
		return s
	}
	tail := (n - 1) / 2
	return string(r[:n-1-tail]) + "…" + string(r[len(r)-tail:])
}

// writeHumanField writes " key=value", or nothing for a zero or empty
// value.
func writeHumanField(b *strings.Builder, key string, v any) {
	switch x := v.(type) {
	case nil:
		return
	case string:
		if x == "" {
			return
		}
		if strings.ContainsAny(x, " \t\"=") {
			v = fmt.Sprintf("%q", x)
		}
	case bool:
		if !x {
			return
		}
	case int64:
		if x == 0 {
			return
		}
	case float64:
		if x == 0 {
			return
		}
	case time.Duration:
		if x == 0 {
			return
		}
		v = x.Round(time.Millisecond)
	}
	fmt.Fprintf(b, " %s=%v", key, v)
}

// Sync flushes the output.
func (c *humanCore) Sync() error { return c.out.Sync() }
