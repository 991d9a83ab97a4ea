package linker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	defaultUserAgent = "linkbatch"
	maxErrorBody     = 1 << 20 // bytes of an error answer that CheckResponse reads
	maxBody          = 4 << 20 // bytes of a 2xx answer that are decoded
	maxDrain         = 64 << 10
	maxSnippet       = 200 // bytes of a non-JSON error answer kept as its message
	// defaultBodyWait is how long the body of a 2xx answer may take to
	// arrive once its status line has: a link whose 201 arrived happened,
	// whatever its body does.
	defaultBodyWait = 10 * time.Second
)

// ErrInvalidRequest is wrapped by the errors of requests that are rejected
// before anything is sent, such as a LinkRequest with both link_with and
// provider, or an empty user id.
var ErrInvalidRequest = errors.New("invalid request")

// Client calls the Management API of one tenant. It sends each request once:
// pacing and retries are the caller's business, except that a 401 saying the
// token expired is answered, when the TokenSource is a [Renewer], by renewing
// the token and sending the request again, once. The client never follows
// redirects.
//
// A Client is safe for concurrent use.
type Client struct {
	root      string // scheme://host[/path], no trailing slash
	tokens    TokenSource
	hc        *http.Client
	userAgent string
	bodyWait  time.Duration
}

// Option configures a Client in NewClient.
type Option func(*Client)

// WithHTTPClient makes the Client send requests with hc (a nil hc is
// ignored). The Client uses a copy of hc whose CheckRedirect refuses to
// follow redirects.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithUserAgent sets the User-Agent header (default "linkbatch"); an empty
// ua is ignored.
func WithUserAgent(ua string) Option {
	return func(c *Client) {
		if ua != "" {
			c.userAgent = ua
		}
	}
}

// WithBodyWait sets how long the body of a 2xx answer may take to arrive
// after its status line (default 10s); d <= 0 is ignored. The request's
// context bounds it too.
func WithBodyWait(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.bodyWait = d
		}
	}
}

// NewClient returns a Client for the tenant at base (see [ParseDomain]) that
// authenticates with tokens. It returns an error when base is not an
// absolute http(s) URL without user info, query or fragment, or tokens is nil.
func NewClient(base *url.URL, tokens TokenSource, opts ...Option) (*Client, error) {
	switch {
	case base == nil:
		return nil, errors.New("new client: no base URL")
	case base.Scheme != "https" && base.Scheme != "http":
		return nil, fmt.Errorf("new client: base URL scheme %q is not http(s)", base.Scheme)
	case base.Host == "":
		return nil, errors.New("new client: base URL has no host")
	case base.User != nil || base.RawQuery != "" || base.Fragment != "" || base.Opaque != "":
		return nil, errors.New("new client: base URL must not have user info, a query or a fragment")
	case tokens == nil:
		return nil, errors.New("new client: no token source")
	}
	c := &Client{
		root:      base.Scheme + "://" + base.Host + strings.TrimSuffix(base.EscapedPath(), "/"),
		tokens:    tokens,
		userAgent: defaultUserAgent,
		bodyWait:  defaultBodyWait,
	}
	for _, opt := range opts {
		opt(c)
	}
	var hc http.Client
	if c.hc != nil {
		hc = *c.hc
	} else {
		hc.Transport = defaultTransport()
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &hc
	return c, nil
}

// defaultTransport is http.DefaultTransport with room for more idle
// connections per host, so that concurrent workers reuse theirs.
func defaultTransport() http.RoundTripper {
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return http.DefaultTransport
	}
	t = t.Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}

// Link sends POST /api/v2/users/{PrimaryID}/identities and returns the
// primary's identities from the 201 answer. The body is {"link_with"} alone
// when LinkWith is set, else {"provider","user_id"} plus "connection_id"
// when set.
//
// A 2xx status line means the link happened: Link then returns no error,
// whatever the body does. When the body could not be read within its limit
// and time (see [WithBodyWait]) or decoded, the identities are nil and
// Response.BodyErr says why. The API documents 201; the caller may check
// another 2xx status (Response.StatusCode) by reading the primary.
//
// The *Response is returned whenever an answer arrived, also with an error.
// Errors are wrapped as "link PRIMARY: ...": a request that is not valid
// wraps [ErrInvalidRequest]; an API answer other than 2xx is an *[APIError]
// or *[RateLimitError]; a transport error keeps its cause (so errors.Is finds
// context.DeadlineExceeded). No error contains the token or the link_with JWT.
func (c *Client) Link(ctx context.Context, req LinkRequest) ([]Identity, *Response, error) {
	body, err := linkBody(req)
	if err != nil {
		return nil, nil, fmt.Errorf("link %s: %w", req.PrimaryID, err)
	}
	var ids []Identity
	resp, err := c.send(ctx, http.MethodPost, c.userURL(req.PrimaryID, "/identities", nil), body, &ids, req.LinkWith)
	var be *bodyError
	if errors.As(err, &be) && resp != nil {
		resp.BodyErr = fmt.Errorf("link %s: %w", req.PrimaryID, err)
		return nil, resp, nil
	}
	if err != nil {
		return nil, resp, fmt.Errorf("link %s: %w", req.PrimaryID, err)
	}
	return ids, resp, nil
}

// GetUser sends GET /api/v2/users/{id}, asking only for fields when any are
// given (?fields=a,b&include_fields=true). Errors are as for Link, wrapped as
// "get user ID: ...".
func (c *Client) GetUser(ctx context.Context, id string, fields ...string) (*User, *Response, error) {
	if err := checkPathID(id); err != nil {
		return nil, nil, fmt.Errorf("get user %s: %w", id, err)
	}
	var q url.Values
	if len(fields) > 0 {
		q = url.Values{"fields": {strings.Join(fields, ",")}, "include_fields": {"true"}}
	}
	var u User
	resp, err := c.send(ctx, http.MethodGet, c.userURL(id, "", q), nil, &u)
	if err != nil {
		return nil, resp, fmt.Errorf("get user %s: %w", id, err)
	}
	return &u, resp, nil
}

// userURL returns the URL of /api/v2/users/{id}{suffix}, with id escaped as
// one path segment.
func (c *Client) userURL(id, suffix string, q url.Values) string {
	u := c.root + "/api/v2/users/" + url.PathEscape(id) + suffix
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// send makes the request with a token from c.tokens and decodes a 2xx answer
// into v (a nil v ignores the body). On a 401 "expired token" answer it
// renews the token once, if it can, and sends the request again. Errors are
// scrubbed of the tokens used and of secrets.
func (c *Client) send(ctx context.Context, method, u string, body []byte, v any, secrets ...string) (*Response, error) {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return nil, redactError(err, secrets...)
	}
	secrets = append(secrets, tok)
	resp, err := c.do(ctx, method, u, body, tok, v, secrets)
	rn, ok := c.tokens.(Renewer)
	if err == nil || !ok || !IsTokenExpired(err) {
		return resp, redactError(err, secrets...)
	}
	if rerr := rn.Renew(ctx, tok); rerr != nil {
		return resp, redactError(fmt.Errorf("%w; renew token: %w", err, rerr), secrets...)
	}
	if tok, err = c.tokens.Token(ctx); err != nil {
		return resp, redactError(err, secrets...)
	}
	secrets = append(secrets, tok)
	resp, err = c.do(ctx, method, u, body, tok, v, secrets)
	return resp, redactError(err, secrets...)
}

// do sends one request and reads its answer. The body of a 2xx answer is
// read within maxBody bytes and c.bodyWait; when that fails, or it does not
// decode into v, the error is a *bodyError.
func (c *Client) do(ctx context.Context, method, u string, body []byte, tok string, v any, secrets []string) (*Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hr, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	resp := &Response{StatusCode: hr.StatusCode, RateLimit: ParseRateLimit(hr.Header)}
	if d, err := http.ParseTime(hr.Header.Get("Date")); err == nil {
		resp.Date = d
	}
	if err := checkResponse(hr, secrets...); err != nil {
		drainClose(hr.Body)
		return resp, err
	}
	// Closing the body ends a read that is under way: the body of an
	// answer whose status arrived gets its own time, not the request's.
	timer := time.AfterFunc(c.bodyWait, func() { _ = hr.Body.Close() })
	data, err := io.ReadAll(io.LimitReader(hr.Body, maxBody+1))
	if !timer.Stop() && err != nil {
		err = fmt.Errorf("no complete body within %s", c.bodyWait)
	}
	if err != nil {
		_ = hr.Body.Close()
		return resp, &bodyError{fmt.Errorf("read %d answer: %w", hr.StatusCode, err)}
	}
	if len(data) > maxBody {
		_ = hr.Body.Close() // the rest may trickle: do not wait for it
		return resp, &bodyError{fmt.Errorf("read %d answer: body exceeds %d bytes", hr.StatusCode, maxBody)}
	}
	drainClose(hr.Body)
	if v == nil { // an answer whose body is not used (204)
		return resp, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return resp, &bodyError{fmt.Errorf("decode %d answer: %w", hr.StatusCode, err)}
	}
	return resp, nil
}

// bodyError is the failure to read or decode the body of a 2xx answer.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// drainClose reads a bounded rest of body, so that the connection can be
// reused, and closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	_ = body.Close()
}

// linkBody validates r and returns its JSON body.
func linkBody(r LinkRequest) ([]byte, error) {
	if err := checkPathID(r.PrimaryID); err != nil {
		return nil, err
	}
	if r.LinkWith != "" {
		if r.Provider != "" || r.UserID != "" || r.ConnectionID != "" {
			return nil, fmt.Errorf("%w: link_with excludes provider, user_id and connection_id", ErrInvalidRequest)
		}
		return json.Marshal(struct {
			LinkWith string `json:"link_with"`
		}{r.LinkWith})
	}
	switch {
	case r.Provider == "" || r.UserID == "":
		return nil, fmt.Errorf("%w: provider and user_id are required (or link_with alone)", ErrInvalidRequest)
	case !utf8.ValidString(r.Provider) || !utf8.ValidString(r.UserID):
		return nil, fmt.Errorf("%w: provider or user_id is not valid UTF-8", ErrInvalidRequest)
	case CheckID(r.Provider) != nil || CheckID(r.UserID) != nil:
		return nil, fmt.Errorf("%w: provider or user_id is blank or contains control characters", ErrInvalidRequest)
	case r.ConnectionID != "" && !ValidConnectionID(r.ConnectionID):
		return nil, fmt.Errorf("%w: connection_id %q does not match ^con_[A-Za-z0-9]{16}$", ErrInvalidRequest, r.ConnectionID)
	}
	return json.Marshal(struct {
		Provider     string `json:"provider"`
		UserID       string `json:"user_id"`
		ConnectionID string `json:"connection_id,omitempty"`
	}{r.Provider, r.UserID, r.ConnectionID})
}

// checkPathID rejects ids that cannot be sent as a path segment unchanged.
func checkPathID(id string) error {
	switch {
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: user id is not valid UTF-8", ErrInvalidRequest)
	case id == "." || id == "..":
		return fmt.Errorf("%w: user id %q is a dot segment", ErrInvalidRequest, id)
	}
	if err := CheckID(id); err != nil {
		return fmt.Errorf("%w: user id %w", ErrInvalidRequest, err)
	}
	return nil
}

// CheckResponse returns nil for a 2xx answer and otherwise the error it
// carries: *[RateLimitError] for 429 and *[APIError] for any other status.
//
// The error is read from a JSON body {statusCode, error, message, errorCode}
// (an OAuth body {error, error_description} is understood too); a body that
// is not JSON gives its first 200 bytes, trimmed, as the message, unless it
// carries a credential (a form-encoded secret, a bearer token, link_with):
// then the message is withheld. A 3xx answer names the host of its Location
// and nothing else. At most 1 MiB
// of the body is read; the caller still closes it. The reset time of a 429 is
// taken from x-ratelimit-reset (Unix seconds) or Retry-After (seconds or an
// HTTP date), the later one when both are present.
func CheckResponse(r *http.Response) error { return checkResponse(r) }

// checkResponse is CheckResponse, masking secrets in the message before it
// is cut.
func checkResponse(r *http.Response, secrets ...string) error {
	if r.StatusCode >= 200 && r.StatusCode <= 299 {
		return nil
	}
	var data []byte
	if r.Body != nil {
		data, _ = io.ReadAll(io.LimitReader(r.Body, maxErrorBody))
	}
	return classify(r.StatusCode, r.Header, data, secrets...)
}

// classify builds the typed error of an answer with the given status,
// headers and body. Secrets are masked before anything is cut, and a
// message that carries a credential is withheld whole. A 3xx answer's error
// names only its status and the host of its Location.
func classify(status int, h http.Header, body []byte, secrets ...string) error {
	ae := APIError{Status: status}
	if status >= 300 && status <= 399 {
		ae.Message = "redirect to " + locationHost(h.Get("Location")) + " not followed (linkbatch follows no redirects)"
		return &ae
	}
	var b struct {
		StatusCode       *int   `json:"statusCode"`
		Error            string `json:"error"`
		Message          string `json:"message"`
		ErrorCode        string `json:"errorCode"`
		ErrorDescription string `json:"error_description"`
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &b) == nil {
		ae.Title, ae.Message, ae.Code = b.Error, b.Message, b.ErrorCode
		oauth := b.StatusCode == nil && b.Message == "" && b.ErrorCode == "" &&
			(b.ErrorDescription != "" || !strings.ContainsAny(b.Error, " \t"))
		switch {
		case oauth:
			ae.Title, ae.Code, ae.Message = "", b.Error, b.ErrorDescription
		case ae.Message == "":
			ae.Message = b.ErrorDescription
		}
		for _, f := range []*string{&ae.Title, &ae.Code, &ae.Message} {
			if *f = redact(*f, secrets); holdsCredential(*f, false) {
				*f = withheld
			}
		}
	} else {
		text := redact(string(body), secrets)
		if holdsCredential(text, true) {
			ae.Message = withheld
		} else {
			ae.Message = snippet([]byte(text), maxSnippet)
		}
	}
	if status == http.StatusTooManyRequests {
		return &RateLimitError{APIError: ae, Reset: resetTime(h, time.Now())}
	}
	return &ae
}

// locationHost returns the host named by a Location header, for an error
// message: never its path or query, which may carry anything.
func locationHost(loc string) string {
	if loc == "" {
		return "no location"
	}
	u, err := url.Parse(loc)
	switch {
	case err != nil:
		return "an unparsable location"
	case u.Host == "":
		return "the same host"
	}
	return strconv.Quote(u.Host)
}

// snippet returns the first n bytes of b (cut at a rune boundary) with runs
// of white space collapsed to one space.
func snippet(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
		for i := 0; i < utf8.UTFMax && len(b) > 0 && !utf8.Valid(b); i++ {
			b = b[:len(b)-1]
		}
	}
	return strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "\uFFFD")), " ")
}

// resetTime returns when a 429 answer with headers h said to try again: the
// later of x-ratelimit-reset and Retry-After (relative to now when given in
// seconds), zero when neither is usable.
func resetTime(h http.Header, now time.Time) time.Time {
	reset := ParseRateLimit(h).Reset
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return reset
	}
	var ra time.Time
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs >= 0 && secs < 1<<31 {
			ra = now.Add(time.Duration(secs) * time.Second)
		}
	} else if t, err := http.ParseTime(v); err == nil {
		ra = t
	}
	if ra.After(reset) {
		return ra
	}
	return reset
}

// ParseRateLimit reads the x-ratelimit-limit, x-ratelimit-remaining and
// x-ratelimit-reset (Unix seconds) headers. Headers that are absent or not
// integers are left zero; Known reports whether any was read.
func ParseRateLimit(h http.Header) RateLimit {
	var rl RateLimit
	if n, ok := headerInt(h, "X-Ratelimit-Limit"); ok {
		rl.Limit, rl.Known = int(min(n, math.MaxInt32)), true
	}
	if n, ok := headerInt(h, "X-Ratelimit-Remaining"); ok {
		rl.Remaining, rl.Known = int(min(n, math.MaxInt32)), true
	}
	if n, ok := headerInt(h, "X-Ratelimit-Reset"); ok && n > 0 {
		rl.Reset, rl.Known = time.Unix(n, 0), true
	}
	return rl
}

func headerInt(h http.Header, key string) (int64, bool) {
	v := strings.TrimSpace(h.Get(key))
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
