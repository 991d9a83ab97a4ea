package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// snapshot returns the metadata of the tenant's users by id, an empty
// object counted as none.
func snapshot(t *testing.T, srv *linkertest.Server, ids ...string) map[string][2]map[string]any {
	t.Helper()
	out := map[string][2]map[string]any{}
	norm := func(m map[string]any) map[string]any {
		if len(m) == 0 {
			return nil
		}
		return m
	}
	for _, id := range ids {
		u, ok := srv.User(id)
		if !ok {
			t.Fatalf("user %s is not a standalone user of the tenant", id)
		}
		out[id] = [2]map[string]any{norm(u.UserMetadata), norm(u.AppMetadata)}
	}
	return out
}

// linkWithBackup runs the input against srv with a backup at backupPath
// (appended to) and the results at outPath (appended to, resuming the
// lines it holds). wrap, when set, wraps the backup writer.
func linkWithBackup(t *testing.T, srv *linkertest.Server, cfg Config, input, backupPath, outPath string, wrap func(Backup) Backup) (Summary, error) {
	t.Helper()
	return linkThrough(t, newTestRunner(t, srv, cfg), input, backupPath, outPath, wrap)
}

// linkThrough is linkWithBackup with the Runner r.
func linkThrough(t *testing.T, r *Runner, input, backupPath, outPath string, wrap func(Backup) Backup) (Summary, error) {
	t.Helper()
	bf, err := os.OpenFile(backupPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	if err := CutTornLine(bf); err != nil {
		t.Fatal(err)
	}
	var backup Backup = NewBackupWriter(bf)
	if wrap != nil {
		backup = wrap(backup)
	}
	r.Backup = backup
	header := true
	if _, err := os.Stat(outPath); err == nil {
		done, _, err := PrepareResume(outPath, false)
		if err != nil {
			t.Fatal(err)
		}
		r.Done, header = done, false
	}
	of, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	w, err := NewResultWriter(of, header)
	if err != nil {
		t.Fatal(err)
	}
	return r.Run(context.Background(), opener(input), w)
}

// rollback rolls back the linked rows of the results at outPath with the
// backup at backupPath and returns the rollback's results by line.
func rollback(t *testing.T, srv *linkertest.Server, backupPath, outPath string, lines *LineSet) map[int]Result {
	t.Helper()
	return rollbackWith(t, newTestRunner(t, srv, DefaultConfig()), backupPath, outPath, lines)
}

// rollbackWith is rollback with the Runner r.
func rollbackWith(t *testing.T, r *Runner, backupPath, outPath string, lines *LineSet) map[int]Result {
	t.Helper()
	bf, err := os.Open(backupPath)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	st, _ := bf.Stat()
	idx, err := IndexBackup(bf, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	src, err := OpenRollback(outPath, idx, lines)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r.Action = (&Rollback{Index: idx}).Act
	rbPath := filepath.Join(filepath.Dir(outPath), "rollback.csv")
	of, err := os.Create(rbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	w, err := NewResultWriter(of, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RunSource(context.Background(), src, w); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	got := map[int]Result{}
	rf, _ := os.Open(rbPath)
	defer rf.Close()
	if err := ReadResults(rf, func(res Result) error { got[res.Line] = res; return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

var metadataUsers = []string{"auth0|p1", "github|s1", "auth0|p2", "github|s2", "auth0|p3", "github|s3"}

func TestRollbackRestoresMetadata(t *testing.T) {
	for _, policy := range []MergePolicy{MergePrimaryWins, MergeSecondaryWins, MergeNone} {
		t.Run(string(policy), func(t *testing.T) {
			srv := metadataTenant(t)
			before := snapshot(t, srv, metadataUsers...)
			dir := t.TempDir()
			backupPath, outPath := filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "results.csv")
			cfg := DefaultConfig()
			cfg.Merge = policy
			sum, err := linkWithBackup(t, srv, cfg, metadataInput, backupPath, outPath, nil)
			if err != nil || sum.Counts[StatusLinked] != 3 {
				t.Fatalf("link run: %v, %v", err, sum.Counts)
			}
			// Someone sets a key of their own on a primary after the link:
			// the rollback leaves it.
			mustPatch(t, srv, "auth0|p2", linker.UserPatch{UserMetadata: map[string]any{"later": "kept"}})

			got := rollback(t, srv, backupPath, outPath, nil)
			for line := 2; line <= 4; line++ {
				if got[line].Status != StatusUnlinked {
					t.Errorf("line %d: %+v, want unlinked", line, got[line])
				}
			}
			after := snapshot(t, srv, metadataUsers...)
			want := before
			want["auth0|p2"] = [2]map[string]any{{"lang": "de", "later": "kept"}, want["auth0|p2"][1]}
			for _, id := range metadataUsers {
				if !equalJSON(after[id], want[id]) {
					t.Errorf("%s: metadata %v after the rollback, want %v", id, after[id], want[id])
				}
			}
			if st := srv.Stats(); st.MetadataWipes != 0 {
				t.Errorf("%d PATCHes wiped a metadata object", st.MetadataWipes)
			}

			// A second rollback finds every pair unlinked already and
			// changes nothing.
			patches := srv.Stats().Patches
			got = rollback(t, srv, backupPath, outPath, nil)
			for line := 2; line <= 4; line++ {
				if got[line].Status != StatusAlreadyUnlinked {
					t.Errorf("second rollback, line %d: %+v, want already_unlinked", line, got[line])
				}
			}
			if n := srv.Stats().Patches - patches; n != 0 {
				t.Errorf("the second rollback sent %d PATCHes, want none", n)
			}
		})
	}
}

func TestRollbackOnlyGivenLines(t *testing.T) {
	srv := metadataTenant(t)
	dir := t.TempDir()
	backupPath, outPath := filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "results.csv")
	cfg := DefaultConfig()
	cfg.Merge = MergePrimaryWins
	if _, err := linkWithBackup(t, srv, cfg, metadataInput, backupPath, outPath, nil); err != nil {
		t.Fatal(err)
	}
	lines := &LineSet{}
	lines.Add(3)
	got := rollback(t, srv, backupPath, outPath, lines)
	if len(got) != 1 || got[3].Status != StatusUnlinked {
		t.Errorf("rollback of line 3: %+v", got)
	}
	if _, ok := srv.LinkedTo("github|s1"); !ok {
		t.Error("github|s1 was unlinked although only line 3 was rolled back")
	}
	if _, ok := srv.LinkedTo("github|s2"); ok {
		t.Error("github|s2 is still linked")
	}
}

// crashAfter is a Backup that, at the given line, makes the record durable
// and then fails as if the process had died before sending anything else.
type crashAfter struct {
	Backup
	line int
}

func (c crashAfter) Record(rec BackupRecord) error {
	if err := c.Backup.Record(rec); err != nil {
		return err
	}
	if rec.Line == c.line {
		return errors.New("simulated crash")
	}
	return nil
}

func TestBackupCrashBeforeLinkResumes(t *testing.T) {
	srv := metadataTenant(t)
	before := snapshot(t, srv, metadataUsers...)
	dir := t.TempDir()
	backupPath, outPath := filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "results.csv")
	cfg := DefaultConfig()
	cfg.Merge, cfg.Workers = MergePrimaryWins, 1
	// Line 2 is backed up and merged, but its link never reaches the
	// tenant (the connection is closed until the retries run out); the
	// process dies right after backing up line 3.
	px := proxy(t, srv, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost {
			return false
		}
		hijackClose(w)
		return true
	})
	r := runnerAt(t, srv, px.URL, px.Client(), cfg)
	_, err := linkThrough(t, r, metadataInput, backupPath, outPath, func(b Backup) Backup { return crashAfter{b, 3} })
	if !errors.Is(err, ErrBackup) {
		t.Fatalf("first run: %v, want ErrBackup", err)
	}
	for _, id := range []string{"github|s1", "github|s2"} {
		if _, ok := srv.LinkedTo(id); ok {
			t.Fatalf("%s was linked in the first run", id)
		}
	}
	if p1, _ := srv.User("auth0|p1"); p1.UserMetadata["nick"] != "ann" {
		t.Fatalf("the first run did not merge line 2: %v", p1.UserMetadata)
	}
	// A torn record, as a crash mid-write leaves.
	bf, _ := os.OpenFile(backupPath, os.O_WRONLY|os.O_APPEND, 0)
	bf.WriteString(`{"time":"2026-01-01T00:00:00Z","line":4,"prim`)
	bf.Close()

	sum, err := linkWithBackup(t, srv, cfg, metadataInput, backupPath, outPath, nil)
	if err != nil || sum.Counts[StatusLinked] != 3 {
		t.Fatalf("resumed run: %v, %v", err, sum.Counts)
	}
	for _, id := range []string{"github|s1", "github|s2", "github|s3"} {
		if _, ok := srv.LinkedTo(id); !ok {
			t.Errorf("%s is not linked after the resume", id)
		}
	}
	got := rollback(t, srv, backupPath, outPath, nil)
	if len(got) != 3 {
		t.Errorf("rollback results %v, want 3 rows", got)
	}
	after := snapshot(t, srv, metadataUsers...)
	for _, id := range metadataUsers {
		if !equalJSON(after[id], before[id]) {
			t.Errorf("%s: metadata %v after the rollback, want %v", id, after[id], before[id])
		}
	}
}

func mustPatch(t *testing.T, srv *linkertest.Server, id string, p linker.UserPatch) {
	t.Helper()
	r := newTestRunner(t, srv, DefaultConfig())
	if _, _, err := r.Client.PatchUser(context.Background(), id, p); err != nil {
		t.Fatal(err)
	}
}

func equalJSON(a, b [2]map[string]any) bool {
	return jsonText(a) == jsonText(b)
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// hijackClose closes the connection of w without answering.
func hijackClose(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

func TestRollbackRestoresMergeOfFailedLink(t *testing.T) {
	srv := metadataTenant(t)
	before := snapshot(t, srv, metadataUsers...)
	dir := t.TempDir()
	backupPath, outPath := filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "results.csv")
	// The tenant refuses the link of line 2 after its merge went through.
	px := proxy(t, srv, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || !strings.Contains(r.URL.EscapedPath(), url.PathEscape("auth0|p1")) {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"statusCode":400,"error":"Bad Request","message":"The provider/connection is not configured.","errorCode":"inexistent_connection"}`))
		return true
	})
	cfg := DefaultConfig()
	cfg.Merge = MergePrimaryWins
	sum, err := linkThrough(t, runnerAt(t, srv, px.URL, px.Client(), cfg), metadataInput, backupPath, outPath, nil)
	if err != nil || sum.Counts[StatusFailed] != 1 || sum.Counts[StatusLinked] != 2 {
		t.Fatalf("link run: %v, %v", err, sum.Counts)
	}
	if p1, _ := srv.User("auth0|p1"); p1.UserMetadata["nick"] != "ann" {
		t.Fatalf("line 2 was not merged before its link failed: %v", p1.UserMetadata)
	}
	got := rollback(t, srv, backupPath, outPath, nil)
	if got[2].Status != StatusAlreadyUnlinked {
		t.Errorf("line 2: %+v, want already_unlinked", got[2])
	}
	after := snapshot(t, srv, metadataUsers...)
	for _, id := range metadataUsers {
		if !equalJSON(after[id], before[id]) {
			t.Errorf("%s: metadata %v after the rollback, want %v", id, after[id], before[id])
		}
	}
}

func TestRollbackUndoesLinkWhoseAnswerWasLost(t *testing.T) {
	srv := metadataTenant(t)
	before := snapshot(t, srv, metadataUsers...)
	dir := t.TempDir()
	backupPath, outPath := filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "results.csv")
	// The first link of each pair reaches the tenant, but its answer is
	// lost: the retry finds the pair linked (already_linked).
	var mu sync.Mutex
	seen := map[string]bool{}
	px := proxy(t, srv, func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		first := r.Method == http.MethodPost && !seen[r.URL.Path]
		seen[r.URL.Path] = true
		mu.Unlock()
		if !first {
			return false
		}
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequest(r.Method, srv.URL+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		if resp, err := srv.Client().Do(req); err == nil {
			resp.Body.Close()
		}
		hijackClose(w)
		return true
	})
	cfg := DefaultConfig()
	cfg.Merge = MergePrimaryWins
	sum, err := linkThrough(t, runnerAt(t, srv, px.URL, px.Client(), cfg), metadataInput, backupPath, outPath, nil)
	if err != nil || sum.Counts[StatusAlreadyLinked] != 3 {
		t.Fatalf("link run: %v, %v", err, sum.Counts)
	}
	got := rollback(t, srv, backupPath, outPath, nil)
	for line := 2; line <= 4; line++ {
		if got[line].Status != StatusUnlinked {
			t.Errorf("line %d: %+v, want unlinked", line, got[line])
		}
	}
	after := snapshot(t, srv, metadataUsers...)
	for _, id := range metadataUsers {
		if !equalJSON(after[id], before[id]) {
			t.Errorf("%s: metadata %v after the rollback, want %v", id, after[id], before[id])
		}
	}
}

func TestRollbackLeavesPairsLinkedBeforeTheRun(t *testing.T) {
	srv := metadataTenant(t)
	r := newTestRunner(t, srv, DefaultConfig())
	if _, _, err := r.Client.Link(context.Background(), linker.LinkRequest{PrimaryID: "auth0|p1", Provider: "github", UserID: "s1"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	backupPath, outPath := filepath.Join(dir, "backup.ndjson"), filepath.Join(dir, "results.csv")
	cfg := DefaultConfig()
	cfg.Merge = MergePrimaryWins
	sum, err := linkWithBackup(t, srv, cfg, metadataInput, backupPath, outPath, nil)
	if err != nil || sum.Counts[StatusAlreadyLinked] != 1 || sum.Counts[StatusLinked] != 2 {
		t.Fatalf("link run: %v, %v", err, sum.Counts)
	}
	got := rollback(t, srv, backupPath, outPath, nil)
	if _, ok := got[2]; ok || len(got) != 2 {
		t.Errorf("rollback results %v, want lines 3 and 4 only", got)
	}
	if p, ok := srv.LinkedTo("github|s1"); !ok || p != "auth0|p1" {
		t.Error("the rollback unlinked a pair linked before the run")
	}
}
