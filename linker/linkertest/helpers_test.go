package linkertest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/linkbatch/linkbatch/linker/linkertest"
)

const (
	ctJSON = "application/json"
	ctForm = "application/x-www-form-urlencoded"
)

// newServer starts a server on a loopback socket, closed at the end of the
// test. Inside a synctest bubble use linkertest.Config.InMemory and defer
// Close instead.
func newServer(t *testing.T, cfg linkertest.Config) *linkertest.Server {
	t.Helper()
	s := linkertest.NewServer(cfg)
	t.Cleanup(s.Close)
	return s
}

// answer is one HTTP answer, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// apiError is the error body of the Management API.
type apiError struct {
	StatusCode int    `json:"statusCode"`
	Error      string `json:"error"`
	Message    string `json:"message"`
	ErrorCode  string `json:"errorCode"`
}

// identity is an identity as the API renders it.
type identity struct {
	Connection        string         `json:"connection"`
	UserID            any            `json:"user_id"`
	Provider          string         `json:"provider"`
	IsSocial          bool           `json:"isSocial"`
	ProfileData       map[string]any `json:"profileData"`
	AccessToken       string         `json:"access_token"`
	RefreshToken      string         `json:"refresh_token"`
	AccessTokenSecret string         `json:"access_token_secret"`
}

// send makes one request to s; path is already escaped and may carry a
// query. tok and ctype are left out when empty.
func send(ctx context.Context, s *linkertest.Server, method, path, tok, ctype, body string) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// readAnswer reads and closes resp.
func readAnswer(t *testing.T, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// call is send that fails the test on a transport error.
func call(t *testing.T, s *linkertest.Server, method, path, tok, ctype, body string) answer {
	t.Helper()
	a, err := send(t.Context(), s, method, path, tok, ctype, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return a
}

func linkPath(primary string) string {
	return "/api/v2/users/" + url.PathEscape(primary) + "/identities"
}
func userPath(id string) string { return "/api/v2/users/" + url.PathEscape(id) }

// link posts a provider/user_id link request with a JSON body.
func link(t *testing.T, s *linkertest.Server, tok, primary, provider, userID string) answer {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"provider": provider, "user_id": userID})
	return call(t, s, http.MethodPost, linkPath(primary), tok, ctJSON, string(b))
}

func getUser(t *testing.T, s *linkertest.Server, tok, id string) answer {
	t.Helper()
	return call(t, s, http.MethodGet, userPath(id), tok, "", "")
}

// apiErr decodes an error answer, checking its shape and Content-Type.
func (a answer) apiErr(t *testing.T) apiError {
	t.Helper()
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e apiError
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("error body %q: %v", a.body, err)
	}
	if e.StatusCode != a.status {
		t.Errorf("statusCode = %d, HTTP status %d", e.StatusCode, a.status)
	}
	if e.Error != http.StatusText(a.status) || e.Message == "" || e.ErrorCode == "" {
		t.Errorf("error body %s lacks a field", a.body)
	}
	return e
}

// identities decodes a 201 link answer.
func (a answer) identities(t *testing.T) []identity {
	t.Helper()
	if a.status != http.StatusCreated {
		t.Fatalf("status = %d (%s), want 201", a.status, a.body)
	}
	var ids []identity
	if err := json.Unmarshal(a.body, &ids); err != nil {
		t.Fatalf("identities %q: %v", a.body, err)
	}
	return ids
}

// want checks the status and, for an error, its errorCode and that its
// message contains msg.
func (a answer) want(t *testing.T, status int, code, msg string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status = %d (%s), want %d", a.status, a.body, status)
	}
	if status < 400 {
		return
	}
	e := a.apiErr(t)
	if e.ErrorCode != code || !strings.Contains(e.Message, msg) {
		t.Errorf("error = %s/%q, want %s/%q", e.ErrorCode, e.Message, code, msg)
	}
}
