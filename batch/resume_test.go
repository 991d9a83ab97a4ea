package batch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrepareResume(t *testing.T) {
	header := strings.Join(resultColumns, ",") + "\n"
	linked := "2,auth0|a,github|a,linked,201,1,,,10,false,,\n"
	invalid := "3,auth0|b,,invalid,,0,,secondary_user_id: is empty,0,false,\n"
	transient := "4,auth0|c,github|c,failed,503,6,,503 Service Unavailable,900,true,\n"
	permanent := "5,auth0|d,github|d,failed,404,1,inexistent_user,404 Not Found: User not found.,12,false,\n"
	tests := []struct {
		name        string
		give        string
		retryFailed bool
		wantLines   []int // final lines kept, in file order
		wantTorn    bool
		wantDropped int
	}{
		{name: "whole file", give: header + linked + invalid + permanent, wantLines: []int{2, 3, 5}},
		{name: "transient failure dropped", give: header + linked + transient, wantLines: []int{2}, wantDropped: 1},
		{name: "retry-failed drops permanent failures too", give: header + linked + permanent + transient, retryFailed: true, wantLines: []int{2}, wantDropped: 2},
		{name: "torn last row", give: header + linked + invalid[:20], wantLines: []int{2}, wantTorn: true},
		{name: "torn inside the header", give: header[:15], wantTorn: true},
		{name: "torn after a line break inside a quoted cell",
			give:      header + linked + "6,\"auth0|x\ny\",github|y,invalid,,0,,\"primary_user_id: contains\n",
			wantLines: []int{2}, wantTorn: true},
		{name: "repeated line keeps the first", give: header + linked + linked, wantLines: []int{2}, wantDropped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "results.csv")
			if err := os.WriteFile(path, []byte(tt.give), 0o600); err != nil {
				t.Fatal(err)
			}
			done, rep, err := PrepareResume(path, tt.retryFailed)
			if err != nil {
				t.Fatalf("PrepareResume: %v", err)
			}
			if rep.Torn != tt.wantTorn || rep.Dropped != tt.wantDropped || rep.Kept != len(tt.wantLines) || done.Len() != len(tt.wantLines) {
				t.Errorf("report %+v, done %d; want torn %v dropped %d kept %d", rep, done.Len(), tt.wantTorn, tt.wantDropped, len(tt.wantLines))
			}
			// The file now holds exactly the kept rows, and reads back whole.
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var got []int
			if err := ReadResults(f, func(r Result) error { got = append(got, r.Line); return nil }); err != nil {
				t.Fatalf("the repaired file does not read back: %v", err)
			}
			if len(got) != len(tt.wantLines) {
				t.Fatalf("file holds lines %v, want %v", got, tt.wantLines)
			}
			for i := range got {
				if got[i] != tt.wantLines[i] || !done.Has(got[i]) {
					t.Errorf("file holds lines %v, want %v", got, tt.wantLines)
				}
			}
		})
	}
}

func TestCheckResume(t *testing.T) {
	info := NewRunInfo("abc", false, time.Unix(0, 0))
	tests := []struct {
		name        string
		fingerprint string
		dryRun      bool
		wantErr     string
	}{
		{"same input and mode", "abc", false, ""},
		{"other input", "abd", false, "different input"},
		{"dry run resuming a real run", "abc", true, "dry run"},
	}
	for _, tt := range tests {
		err := CheckResume(info, tt.fingerprint, tt.dryRun)
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: CheckResume = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestRunInfoRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.csv.run.json")
	want := NewRunInfo("0123", true, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err := WriteRunInfo(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRunInfo(path)
	if err != nil || got != want {
		t.Errorf("ReadRunInfo = %+v, %v; want %+v", got, err, want)
	}
	if err := os.WriteFile(path, []byte(`{"version":9}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRunInfo(path); err == nil {
		t.Errorf("ReadRunInfo accepted a record of another version")
	}
}

// TestPrepareResumeThroughSymlink: compacting a results file named by a
// symbolic link rewrites the file it leads to and leaves the link a link.
func TestPrepareResumeThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.csv")
	header := strings.Join(resultColumns, ",") + "\n"
	linked := "2,auth0|a,github|a,linked,201,1,,,10,false,,\n"
	transient := "3,auth0|c,github|c,failed,503,6,,503 Service Unavailable,900,true,,\n"
	if err := os.WriteFile(real, []byte(header+linked+transient), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.csv")
	if err := os.Symlink("real.csv", link); err != nil {
		t.Fatal(err)
	}
	if _, rep, err := PrepareResume(link, false); err != nil || rep.Dropped != 1 {
		t.Fatalf("PrepareResume: %+v, %v; want 1 row dropped", rep, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a symbolic link (%v)", link, err)
	}
	if b, err := os.ReadFile(real); err != nil || string(b) != header+linked {
		t.Errorf("%s holds %q (%v), want the compacted rows", real, b, err)
	}
}
