package queue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/batch"
)

// TestFileSinkCutsPartialLine: a results file whose last line was cut short
// by a killed run loses that line when opened again, so that no truncated
// message id is read back as done and the next row starts a line of its
// own; whole lines, and the header of an empty file, are kept.
func TestFileSinkCutsPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.csv")
	s, err := OpenFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(batch.Result{Line: 1, Primary: "auth0|a", Secondary: "github|b", Status: batch.StatusLinked, MessageID: "1796197165037-12"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A second row cut short inside its message id: "...,1796197165037-1".
	partial := "2,auth0|c,github|d,linked,201,1,,,5,false,,1796197165037-1"
	if err := os.WriteFile(path, append(whole, partial...), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = OpenFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	if done, err := ReadDone(path); err != nil || len(done) != 1 || !done["1796197165037-12"] {
		t.Errorf("after opening: done %v (%v), want the whole row's id alone", done, err)
	}
	if err := s.Append(batch.Result{Line: 3, Primary: "auth0|e", Secondary: "github|f", Status: batch.StatusLinked, MessageID: "1796197165037-13"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	done, err := ReadDone(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 || !done["1796197165037-12"] || !done["1796197165037-13"] {
		t.Errorf("done %v, want the two whole rows' ids and not the cut one", done)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []int
	if err := batch.ReadResults(f, func(r batch.Result) error { lines = append(lines, r.Line); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0] != 1 || lines[1] != 3 {
		t.Errorf("rows of lines %v, want 1 and 3", lines)
	}
}

// TestFileSinkRefusesCSVResults: a queue run does not append to the
// results file of a CSV run.
func TestFileSinkRefusesCSVResults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := batch.NewResultWriter(f, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(batch.Result{Line: 2, Status: batch.StatusLinked}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := OpenFileSink(path); err == nil || !strings.Contains(err.Error(), "no message_id column") {
		t.Errorf("OpenFileSink() = %v, want a refusal", err)
	}
}
