package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
)

// manyLines is an NDJSON export of n lines, with a blank line every 97th
// and an unreadable one every 101st.
func manyLines(n int) []byte {
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		switch {
		case i%97 == 0:
			b.WriteString("  \n")
		case i%101 == 0:
			fmt.Fprintf(&b, `{"user_id":"auth0|%d","logins_count":"many"}`+"\n", i)
		default:
			fmt.Fprintf(&b, `{"user_id":"auth0|%d","email":"u%d@x.io","email_verified":true,"created_at":"2020-01-01T00:00:00Z"}`+"\n", i, i/3)
		}
	}
	return b.Bytes()
}

type scanned struct {
	users []User
	bad   []string
	n     int
}

func scanWith(t *testing.T, data []byte, workers int) scanned {
	t.Helper()
	var s scanned
	n, err := Scan(context.Background(), bytes.NewReader(data), workers,
		func(u User) { s.users = append(s.users, u) },
		func(le *LineError) { s.bad = append(s.bad, le.Error()) })
	if err != nil {
		t.Fatalf("Scan with %d workers: %v", workers, err)
	}
	s.n = n
	return s
}

func TestScanParallelKeepsOrder(t *testing.T) {
	data := manyLines(5000)
	serial := scanWith(t, data, 1)
	for _, w := range []int{2, 3, 8} {
		got := scanWith(t, data, w)
		if !reflect.DeepEqual(got, serial) {
			t.Fatalf("%d workers: %d users, %d bad; serial %d users, %d bad (or order differs)", w, len(got.users), len(got.bad), len(serial.users), len(serial.bad))
		}
	}
	if serial.n != len(serial.users) || serial.n != 5000-5000/97-5000/101 {
		t.Errorf("n = %d, users %d", serial.n, len(serial.users))
	}
	if len(serial.bad) != 5000/101 || serial.bad[0] != "line 101: logins_count: want a non-negative integer" {
		t.Errorf("bad lines: %d, first %q", len(serial.bad), serial.bad[0])
	}
	for i, u := range serial.users[:200] {
		if want := fmt.Sprintf("auth0|%d", u.Line); u.UserID != want {
			t.Fatalf("user %d: id %s at line %d", i, u.UserID, u.Line)
		}
	}
	gzSerial := scanWith(t, gz(t, data), 4)
	if !reflect.DeepEqual(gzSerial, serial) {
		t.Error("gzip export scans differently")
	}
}

func TestScanStopsOnCancel(t *testing.T) {
	data := manyLines(20000)
	ctx, cancel := context.WithCancel(context.Background())
	seen := 0
	n, err := Scan(ctx, bytes.NewReader(data), 2, func(User) {
		seen++
		if seen == 1000 {
			cancel()
		}
	}, func(*LineError) {})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n >= 19000 {
		t.Errorf("read %d users after the cancel", n)
	}
}

// failingReader gives data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestScanReportsReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	for _, w := range []int{1, 2} {
		n, err := Scan(context.Background(), &failingReader{data: manyLines(3000), err: boom}, w, func(User) {}, func(*LineError) {})
		if !errors.Is(err, boom) {
			t.Errorf("%d workers: err = %v, want the read error", w, err)
		}
		if n == 0 {
			t.Errorf("%d workers: no users before the error", w)
		}
	}
	if _, err := Scan(context.Background(), &failingReader{err: io.ErrUnexpectedEOF}, 2, func(User) {}, func(*LineError) {}); err == nil {
		t.Error("an unreadable export scanned without error")
	}
}
