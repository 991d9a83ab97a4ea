package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"
)

// humanCore is the log format for a person at a terminal (--log-format
// human, the default when stderr is a terminal): one short line per entry,
// "15:04:05 WARN  message key=value ...", fields left out when zero or
// empty. A row that went well ("row" at info level) is logged only at debug
// level: the terminal shows the progress line and the problems, and the
// results file has every row. It is safe for concurrent use.
type humanCore struct {
	zapcore.LevelEnabler
	out    zapcore.WriteSyncer
	mu     *sync.Mutex
	fields []zapcore.Field
}

func newHumanCore(out zapcore.WriteSyncer, level zapcore.LevelEnabler) *humanCore {
	return &humanCore{LevelEnabler: level, out: out, mu: &sync.Mutex{}}
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
		writeHumanRow(&b, enc.Fields)
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

// writeHumanRow writes a row's entry as "line 5: invalid  PRIMARY <-
// SECONDARY  ERROR".
func writeHumanRow(b *strings.Builder, f map[string]any) {
	fmt.Fprintf(b, "line %v: %v", f["line"], f["status"])
	primary, secondary := fmt.Sprint(f["primary"]), fmt.Sprint(f["secondary"])
	if primary != "" || secondary != "" { // a row that could not be parsed has neither
		fmt.Fprintf(b, "  %s <- %s", cmp.Or(primary, "(none)"), cmp.Or(secondary, "(none)"))
	}
	if p, ok := f["secondary_provider"]; ok {
		fmt.Fprintf(b, " (%v)", p)
	}
	if w, ok := f["warning"]; ok {
		fmt.Fprintf(b, "  warning %v", w)
	}
	if code, ok := f["error_code"]; ok {
		fmt.Fprintf(b, "  [%v]", code)
	}
	if e, ok := f["error"]; ok && e != "" {
		fmt.Fprintf(b, "  %v", e)
	}
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
