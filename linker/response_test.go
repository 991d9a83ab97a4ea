package linker_test

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/linkbatch/linkbatch/linker"
)

// countingReader yields n bytes of 'x' and counts what was read.
type countingReader struct{ left, read int }

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left)
	for i := range n {
		p[i] = 'x'
	}
	r.left -= n
	r.read += n
	return n, nil
}

type checkResponseTest struct {
	name      string
	status    int
	header    http.Header
	body      string
	want      *linker.APIError // nil: no error
	wantReset time.Time        // for 429
}

// checkResponseTests returns the CheckResponse cases for a clock reading now.
func checkResponseTests(now time.Time) []checkResponseTest {
	epoch := now.Add(90 * time.Second).Unix()
	return []checkResponseTest{
		{name: "200", status: 200, body: `{"message":"ignored"}`},
		{name: "201", status: 201},
		{name: "204", status: 204},
		{name: "management body", status: 404,
			body: `{"statusCode":404,"error":"Not Found","message":"User not found.","errorCode":"inexistent_user"}`,
			want: &linker.APIError{Status: 404, Title: "Not Found", Message: "User not found.", Code: "inexistent_user"}},
		{name: "body status differs from HTTP status", status: 400, body: `{"statusCode":500,"error":"Bad Request","message":"m"}`,
			want: &linker.APIError{Status: 400, Title: "Bad Request", Message: "m"}},
		{name: "oauth body", status: 401, body: `{"error":"access_denied","error_description":"Unauthorized"}`,
			want: &linker.APIError{Status: 401, Code: "access_denied", Message: "Unauthorized"}},
		{name: "oauth code only", status: 400, body: `{"error":"invalid_request"}`,
			want: &linker.APIError{Status: 400, Code: "invalid_request"}},
		{name: "error_description with management fields", status: 400,
			body: `{"statusCode":400,"error":"Bad Request","error_description":"desc"}`,
			want: &linker.APIError{Status: 400, Title: "Bad Request", Message: "desc"}},
		{name: "json of wrong shape", status: 500, body: `{"message":{"nested":true}}`,
			want: &linker.APIError{Status: 500, Message: `{"message":{"nested":true}}`}},
		{name: "json array", status: 500, body: `["a"]`, want: &linker.APIError{Status: 500, Message: `["a"]`}},
		{name: "text", status: 502, body: "  upstream\n\tconnect error  ", want: &linker.APIError{Status: 502, Message: "upstream connect error"}},
		{name: "empty", status: 503, want: &linker.APIError{Status: 503}},
		{name: "long text cut at 200 bytes", status: 500, body: strings.Repeat("é", 150),
			want: &linker.APIError{Status: 500, Message: strings.Repeat("é", 100)}},
		{name: "invalid UTF-8", status: 500, body: "bad \xff byte", want: &linker.APIError{Status: 500, Message: "bad \uFFFD byte"}},
		{name: "redirect", status: 307, header: http.Header{"Location": {"http://evil.example:8080/steal?client_secret=x"}}, body: "moved to Bearer abcdefghijkl",
			want: &linker.APIError{Status: 307, Message: `redirect to "evil.example:8080" not followed (linkbatch follows no redirects)`}},
		{name: "429 no headers", status: 429, body: `{"statusCode":429,"error":"Too Many Requests"}`,
			want: &linker.APIError{Status: 429, Title: "Too Many Requests"}},
		{name: "429 x-ratelimit-reset", status: 429, header: http.Header{"X-Ratelimit-Reset": {itoa(epoch)}},
			want: &linker.APIError{Status: 429}, wantReset: time.Unix(epoch, 0)},
		{name: "429 retry-after seconds", status: 429, header: http.Header{"Retry-After": {"42"}},
			want: &linker.APIError{Status: 429}, wantReset: now.Add(42 * time.Second)},
		{name: "429 retry-after date", status: 429, header: http.Header{"Retry-After": {now.Add(time.Hour).UTC().Format(http.TimeFormat)}},
			want: &linker.APIError{Status: 429}, wantReset: now.Add(time.Hour).Truncate(time.Second)},
		{name: "429 both, epoch later", status: 429, header: http.Header{"Retry-After": {"5"}, "X-Ratelimit-Reset": {itoa(epoch)}},
			want: &linker.APIError{Status: 429}, wantReset: time.Unix(epoch, 0)},
		{name: "429 both, retry-after later", status: 429, header: http.Header{"Retry-After": {"600"}, "X-Ratelimit-Reset": {itoa(epoch)}},
			want: &linker.APIError{Status: 429}, wantReset: now.Add(600 * time.Second)},
		{name: "429 negative retry-after", status: 429, header: http.Header{"Retry-After": {"-3"}},
			want: &linker.APIError{Status: 429}},
	}
}

func TestCheckResponse(t *testing.T) {
	for i, tc := range checkResponseTests(time.Now()) {
		t.Run(tc.name, func(t *testing.T) {
			// Inside the bubble time.Now stands still, so relative
			// Retry-After values give exact reset times.
			synctest.Test(t, func(t *testing.T) {
				tt := checkResponseTests(time.Now())[i]
				r := &http.Response{StatusCode: tt.status, Header: tt.header, Body: io.NopCloser(strings.NewReader(tt.body))}
				if r.Header == nil {
					r.Header = http.Header{}
				}
				err := linker.CheckResponse(r)
				if tt.want == nil {
					if err != nil {
						t.Fatalf("CheckResponse = %v, want nil", err)
					}
					return
				}
				var ae *linker.APIError
				if !errors.As(err, &ae) || *ae != *tt.want {
					t.Fatalf("CheckResponse = %#v, want %#v", err, tt.want)
				}
				var rle *linker.RateLimitError
				if isRL := errors.As(err, &rle); isRL != (tt.status == 429) {
					t.Fatalf("CheckResponse = %T, rate limit error %v", err, isRL)
				}
				if rle != nil && !rle.Reset.Equal(tt.wantReset) {
					t.Errorf("Reset = %v, want %v", rle.Reset, tt.wantReset)
				}
			})
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestCheckResponseReadsAtMostOneMiB(t *testing.T) {
	body := &countingReader{left: 5 << 20}
	err := linker.CheckResponse(&http.Response{StatusCode: 500, Header: http.Header{}, Body: io.NopCloser(body)})
	if linker.StatusOf(err) != 500 {
		t.Fatalf("CheckResponse = %v", err)
	}
	if body.read > 1<<20 {
		t.Errorf("read %d bytes, want at most 1 MiB", body.read)
	}
	var ae *linker.APIError
	if errors.As(err, &ae) && len(ae.Message) != 200 {
		t.Errorf("message has %d bytes, want 200", len(ae.Message))
	}
}

func TestParseRateLimit(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		want   linker.RateLimit
	}{
		{"none", http.Header{}, linker.RateLimit{}},
		{"all", http.Header{"X-Ratelimit-Limit": {"50"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"1675452600"}},
			linker.RateLimit{Known: true, Limit: 50, Remaining: 0, Reset: time.Unix(1675452600, 0)}},
		{"lower-case names from the wire", headerFromWire("x-ratelimit-limit", "10", "x-ratelimit-remaining", "9"),
			linker.RateLimit{Known: true, Limit: 10, Remaining: 9}},
		{"remaining only", http.Header{"X-Ratelimit-Remaining": {" 3 "}}, linker.RateLimit{Known: true, Remaining: 3}},
		{"garbage", http.Header{"X-Ratelimit-Limit": {"many"}, "X-Ratelimit-Remaining": {"-1"}, "X-Ratelimit-Reset": {"1.5e9"}},
			linker.RateLimit{}},
		{"zero reset ignored", http.Header{"X-Ratelimit-Reset": {"0"}}, linker.RateLimit{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := linker.ParseRateLimit(tt.header); got != tt.want {
				t.Errorf("ParseRateLimit = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// headerFromWire builds a header the way net/http does from received
// name/value pairs.
func headerFromWire(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}
