package linker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TokenSource supplies bearer tokens for the Management API. Implementations
// are safe for concurrent use.
type TokenSource interface {
	// Token returns a token to send now, or an error (the context's error
	// when ctx ends first).
	Token(ctx context.Context) (string, error)
}

// Renewer is implemented by token sources that can fetch a fresh token after
// the server rejected the current one as expired.
type Renewer interface {
	// Renew makes the next Token call return a token other than expired,
	// fetching one if the source still holds expired. It returns nil when
	// a new token is available, and the fetch error otherwise.
	Renew(ctx context.Context, expired string) error
}

// StaticToken returns a TokenSource that always returns tok; it cannot renew.
// Its Token method returns an error when tok is empty or ctx is done. It is
// safe for concurrent use.
func StaticToken(tok string) TokenSource { return staticToken(tok) }

type staticToken string

func (s staticToken) Token(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if s == "" {
		return "", errors.New("get token: the token is empty")
	}
	return string(s), nil
}

// Token lifetimes and renewal margins of ClientCredentials.
const (
	// renewMargin caps how long before expiry a token is renewed; tokens
	// that live less than 4*renewMargin are renewed when a quarter of
	// their lifetime remains.
	renewMargin = 60 * time.Second
	// maxRetryGap caps how long a failed early renewal is not retried
	// while the cached token is still valid.
	maxRetryGap = 10 * time.Second
)

// ClientCredentials gets Management API tokens with the OAuth 2.0 client
// credentials grant (POST TokenURL with a form body carrying grant_type,
// client_id, client_secret and audience).
//
// It caches the token and renews it before it expires: when less than
// min(60s, lifetime/4) of its lifetime remains. Concurrent callers share one
// fetch. If an early renewal fails while the cached token is still valid, the
// cached token is used and the renewal is tried again a little later.
//
// Set the exported fields (or use [NewClientCredentials]) before the first
// call and do not change them afterwards. A ClientCredentials must not be
// copied after first use. Its methods are safe for concurrent use.
//
// Errors never contain the client secret or a token. An answer of the token
// endpoint other than a token becomes an *[APIError] (*[RateLimitError] for
// 429), so [IsAuth] reports rejected credentials; transport errors keep their
// cause, and a done ctx yields its error. Redirects are never followed: a
// 3xx answer is an *[APIError] that names its status and the host of its
// Location only.
type ClientCredentials struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Audience     string       // sent when not empty
	HTTPClient   *http.Client // nil means http.DefaultClient

	mu       sync.Mutex
	tok      string
	expiry   time.Time // zero: the server gave no lifetime
	renewAt  time.Time // zero: no early renewal
	stale    bool      // the server rejected tok as expired
	retryAt  time.Time // after a failed early renewal
	inflight *fetchCall
}

// fetchCall is one token fetch that concurrent callers wait for.
type fetchCall struct {
	done       chan struct{}
	err        error
	leaderDone bool // the fetching caller's context ended
}

// NewClientCredentials returns a ClientCredentials for the tenant at base:
// the token URL is base+"/oauth/token" and an empty audience defaults to
// base+"/api/v2/". A nil hc means http.DefaultClient.
func NewClientCredentials(base *url.URL, clientID, clientSecret, audience string, hc *http.Client) *ClientCredentials {
	var root string
	if base != nil {
		root = strings.TrimSuffix(base.String(), "/")
	}
	if audience == "" && root != "" {
		audience = root + "/api/v2/"
	}
	tokenURL := ""
	if root != "" {
		tokenURL = root + "/oauth/token"
	}
	return &ClientCredentials{
		TokenURL:     tokenURL,
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Audience:     audience,
		HTTPClient:   hc,
	}
}

// Token returns the cached token, fetching a new one first when there is
// none, when it is about to expire, or after Renew. Callers arriving while a
// fetch is under way wait for it (or for their ctx). It returns the fetch
// error, wrapped as "get token: ...", or the error of ctx.
func (c *ClientCredentials) Token(ctx context.Context) (string, error) {
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		c.mu.Lock()
		now := time.Now()
		valid := c.validLocked(now)
		if valid && (c.renewAt.IsZero() || now.Before(c.renewAt)) {
			tok := c.tok
			c.mu.Unlock()
			return tok, nil
		}
		if call := c.inflight; call != nil {
			if valid {
				// Someone is renewing early; the current token still works.
				tok := c.tok
				c.mu.Unlock()
				return tok, nil
			}
			c.mu.Unlock()
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-call.done:
			}
			if call.err != nil && !call.leaderDone {
				return "", call.err
			}
			continue // a new token, or the fetching caller gave up: look again
		}
		if valid && now.Before(c.retryAt) {
			tok := c.tok
			c.mu.Unlock()
			return tok, nil
		}
		call := &fetchCall{done: make(chan struct{})}
		c.inflight = call
		c.mu.Unlock()

		tok, err := c.lead(ctx, call)
		if err == nil {
			return tok, nil
		}
		if cerr := ctx.Err(); cerr != nil {
			if errors.Is(err, cerr) {
				return "", err
			}
			return "", cerr
		}
		c.mu.Lock()
		now = time.Now()
		if c.validLocked(now) {
			// An early renewal failed; keep using the valid token.
			tok := c.tok
			c.retryAt = now.Add(min(maxRetryGap, c.expiry.Sub(now)/4))
			c.mu.Unlock()
			return tok, nil
		}
		c.mu.Unlock()
		return "", err
	}
}

// Renew marks expired as rejected and fetches a new token, unless the source
// already holds another one (another caller renewed it). Concurrent Renew
// calls for the same token cause one fetch. It returns nil when a new token
// is available, or the error Token would return.
func (c *ClientCredentials) Renew(ctx context.Context, expired string) error {
	c.mu.Lock()
	if c.tok != expired && c.tok != "" {
		c.mu.Unlock()
		return nil
	}
	c.stale = true
	c.mu.Unlock()
	_, err := c.Token(ctx)
	return err
}

// validLocked reports whether the cached token may still be sent at now.
func (c *ClientCredentials) validLocked(now time.Time) bool {
	return c.tok != "" && !c.stale && (c.expiry.IsZero() || now.Before(c.expiry))
}

// lead performs call's fetch, stores its result and wakes its waiters.
func (c *ClientCredentials) lead(ctx context.Context, call *fetchCall) (string, error) {
	tok, lifetime, err := c.fetch(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight = nil
	call.err = err
	call.leaderDone = ctx.Err() != nil
	close(call.done)
	if err != nil {
		return "", err
	}
	now := time.Now()
	c.tok, c.stale, c.retryAt = tok, false, time.Time{}
	c.expiry, c.renewAt = time.Time{}, time.Time{}
	if lifetime > 0 {
		c.expiry = now.Add(lifetime)
		c.renewAt = c.expiry.Add(-min(renewMargin, lifetime/4))
	}
	return tok, nil
}

// fetch asks the token endpoint for a token and returns it with its lifetime
// (0 when the server gave none).
func (c *ClientCredentials) fetch(ctx context.Context) (string, time.Duration, error) {
	switch {
	case c.TokenURL == "":
		return "", 0, errors.New("get token: no token URL")
	case c.ClientID == "":
		return "", 0, errors.New("get token: no client id")
	case c.ClientSecret == "":
		return "", 0, errors.New("get token: no client secret")
	}
	cfg := clientcredentials.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret,
		TokenURL:     c.TokenURL,
		AuthStyle:    oauth2.AuthStyleInParams,
	}
	if c.Audience != "" {
		cfg.EndpointParams = url.Values{"audience": {c.Audience}}
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, noRedirects(c.HTTPClient))
	start := time.Now()
	t, err := cfg.Token(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("get token: %w", c.scrub(err))
	}
	if typ := t.Type(); !strings.EqualFold(typ, "bearer") {
		return "", 0, fmt.Errorf("get token: unexpected token type %q", typ)
	}
	var lifetime time.Duration
	switch {
	case t.ExpiresIn > 0:
		lifetime = time.Duration(t.ExpiresIn) * time.Second
	case !t.Expiry.IsZero():
		lifetime = max(t.Expiry.Sub(start), time.Nanosecond)
	}
	return t.AccessToken, lifetime, nil
}

// noRedirects returns a copy of hc (http.DefaultClient when nil) that does
// not follow redirects: a 3xx answer comes back as it is, and fetch refuses
// it. Following one would send the form body, client secret included, to
// wherever the Location points.
func noRedirects(hc *http.Client) *http.Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// scrub turns a token fetch error into one that cannot reveal the client
// secret: an answer of the token endpoint becomes an *APIError built from
// its status and error fields with the secret masked (a 3xx, which is not
// followed, names only its Location's host); other errors are kept, masked
// when their text contains the secret.
func (c *ClientCredentials) scrub(err error) error {
	secrets := []string{c.ClientSecret}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return classify(re.Response.StatusCode, re.Response.Header, re.Body, secrets...)
	}
	return redactError(err, secrets...)
}
