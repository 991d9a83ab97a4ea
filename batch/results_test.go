package batch

import (
	"bytes"
	"encoding/csv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefuse(t *testing.T) {
	tests := []struct{ give, want string }{
		{"", ""},
		{"auth0|123", "auth0|123"},
		{"=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"},
		{"+1", "'+1"},
		{"-2+3", "'-2+3"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\tx", "'\tx"},
		{"\rx", "'\rx"},
		{"a=b", "a=b"},
	}
	for _, tt := range tests {
		if got := Defuse(tt.give); got != tt.want {
			t.Errorf("Defuse(%q) = %q, want %q", tt.give, got, tt.want)
		}
		if got := undefuse(Defuse(tt.give)); got != tt.give {
			t.Errorf("undefuse(Defuse(%q)) = %q", tt.give, got)
		}
	}
}

func TestResultWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewResultWriter(&buf, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{
		{Line: 2, Primary: "auth0|1", Secondary: "google-oauth2|2", Status: StatusLinked, HTTPStatus: 201, Attempts: 1, Duration: 42 * time.Millisecond, Warning: WarnEmailUnverified},
		{Line: 5, Primary: "=cmd|' /C calc'!A0", Secondary: "samlp|acme|bob,\"x\"", Status: StatusFailed, HTTPStatus: 503, Attempts: 6, Error: "503 Service Unavailable", Retryable: true},
		{Line: 3, Primary: "auth0|3", Status: StatusInvalid, Error: "secondary_user_id: is empty"},
		{Line: 4, Primary: "auth0|4", Secondary: "10774", SecondaryProvider: "google-oauth2", Status: StatusPlanned},
	}
	for _, r := range want {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	first := strings.SplitN(buf.String(), "\n", 2)[0]
	if first != strings.Join(resultColumns, ",") {
		t.Errorf("header = %q", first)
	}
	if !strings.Contains(buf.String(), ",google-oauth2\n") {
		t.Errorf("no secondary_provider written:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "'=cmd") {
		t.Errorf("formula cell not defused:\n%s", buf.String())
	}
	var got []Result
	if err := ReadResults(&buf, func(r Result) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d results, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestResultFinal(t *testing.T) {
	tests := []struct {
		give Result
		want bool
	}{
		{Result{Status: StatusLinked}, true},
		{Result{Status: StatusAlreadyLinked}, true},
		{Result{Status: StatusInvalid}, true},
		{Result{Status: StatusSkipped}, true},
		{Result{Status: StatusFailed}, true},
		{Result{Status: StatusFailed, Retryable: true}, false},
		{Result{Status: StatusPlanned}, false},
		{Result{Status: ""}, false},
	}
	for _, tt := range tests {
		if got := tt.give.Final(); got != tt.want {
			t.Errorf("%+v.Final() = %v, want %v", tt.give, got, tt.want)
		}
	}
}

// TestResultWriterMatchesEncodingCSV checks that ResultWriter writes each
// row as encoding/csv's Writer writes its record, on fields that need
// quoting and that do not, short and longer than a word (8 bytes, which
// csvNeedsQuotes tests at once), through each of its ways to append.
func TestResultWriterMatchesEncodingCSV(t *testing.T) {
	parts := []string{"", "a", "auth0|1", ",", "\"", "\r", "\n", "\r\n", " ", "\t", "\v", "\f", "\u00a0", "\u0085",
		"\u2003", "\u3000", "\\.", "\\", ".", "=", "+", "-", "@", "'", "é", "\xff", "\xc2", "x y", ";"}
	rng := rand.New(rand.NewPCG(7, 8))
	text := func() string {
		var b strings.Builder
		for range rng.IntN([]int{4, 16}[rng.IntN(2)]) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		return b.String()
	}
	for _, messageID := range []bool{false, true} {
		var got, want bytes.Buffer
		w, err := newResultWriter(&got, true, messageID)
		if err != nil {
			t.Fatal(err)
		}
		cw := csv.NewWriter(&want)
		header := slices.Clone(resultColumns)
		if messageID {
			header = append(header, ColMessageID)
		}
		if err := cw.Write(header); err != nil {
			t.Fatal(err)
		}
		for i := range 5000 {
			r := Result{
				Line: rng.IntN(1 << 20), Primary: text(), Secondary: text(), Status: Status(text()),
				HTTPStatus: rng.IntN(600) - 50, Attempts: rng.IntN(10), ErrorCode: text(), Error: text(),
				Duration: time.Duration(rng.Int64N(1e12)), Retryable: rng.IntN(2) == 0, Warning: text(),
				SecondaryProvider: text(), MessageID: text(),
			}
			switch i % 3 {
			case 0:
				err = w.Append(r)
			case 1:
				err = w.Write(r)
			default:
				_, err = w.appendAll([]Result{r})
			}
			if err != nil {
				t.Fatal(err)
			}
			rec := r.record()
			if messageID {
				rec = append(rec, Defuse(r.MessageID))
			}
			if err := cw.Write(rec); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		cw.Flush()
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			g, wl := strings.Split(got.String(), "\n"), strings.Split(want.String(), "\n")
			for i := range min(len(g), len(wl)) {
				if g[i] != wl[i] {
					t.Fatalf("messageID %v: line %d is %q, encoding/csv writes %q", messageID, i+1, g[i], wl[i])
				}
			}
			t.Fatalf("messageID %v: %d lines, encoding/csv writes %d", messageID, len(g), len(wl))
		}
	}
}
