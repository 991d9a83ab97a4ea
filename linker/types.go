// Package linker is a client for the Auth0 Management API operations that
// linkbatch needs: "link a user account" (POST /api/v2/users/{id}/identities),
// the read that verifies a link (GET /api/v2/users/{id}), and, for metadata
// merges and rollback, PATCH /api/v2/users/{id} and unlinking
// (DELETE /api/v2/users/{id}/identities/{provider}/{user_id}).
//
// Every non-2xx answer is classified once, by [CheckResponse], into a typed
// error: *[RateLimitError] for 429 and *[APIError] for the rest. Transport
// failures (refused or dropped connections, timeouts) are returned wrapped, as
// the net/http client reported them.
//
// Secrets never appear in the values this package returns: the link_with JWT
// is not part of any error or String form, and the IdP tokens that the API may
// return inside identities are dropped while decoding.
//
// linker is the only package that knows HTTP status codes: it answers the
// questions others ask of a response or an error (Retryable, IsNotFound,
// IsAuth, IsRateLimited, Response.Created). It must not know rows, input
// files, results or pacing.
package linker

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// LinkRequest asks to link one secondary account into a primary account.
//
// Either LinkWith is set (the secondary's JWT, sent alone), or Provider and
// UserID are (and optionally ConnectionID). UserID is the identity's id
// without the provider prefix, e.g. "acme|bob@acme.com" for the user
// "samlp|acme|bob@acme.com".
type LinkRequest struct {
	PrimaryID    string
	Provider     string
	UserID       string
	ConnectionID string
	LinkWith     string
}

// String describes the request without its link_with JWT.
func (r LinkRequest) String() string {
	if r.LinkWith != "" {
		return fmt.Sprintf("%s <- link_with JWT", r.PrimaryID)
	}
	return fmt.Sprintf("%s <- %s|%s", r.PrimaryID, r.Provider, r.UserID)
}

// Identity is one entry of a user's identities array. The IdP tokens that the
// API can include (access_token, access_token_secret, refresh_token) are not
// kept.
type Identity struct {
	Connection string `json:"connection"`
	Provider   string `json:"provider"`
	UserID     string `json:"user_id"`
	IsSocial   bool   `json:"isSocial"`
}

// UnmarshalJSON decodes an identity, accepting a numeric user_id (the API is
// known to return one for some providers) and dropping IdP tokens.
func (id *Identity) UnmarshalJSON(b []byte) error {
	var raw struct {
		Connection string          `json:"connection"`
		Provider   string          `json:"provider"`
		UserID     json.RawMessage `json:"user_id"`
		IsSocial   bool            `json:"isSocial"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	uid, err := decodeUserID(raw.UserID)
	if err != nil {
		return err
	}
	*id = Identity{Connection: raw.Connection, Provider: raw.Provider, UserID: uid, IsSocial: raw.IsSocial}
	return nil
}

func decodeUserID(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", fmt.Errorf("user_id is neither a string nor a number")
	}
	if _, err := strconv.ParseInt(n.String(), 10, 64); err != nil {
		return "", fmt.Errorf("user_id %q is not an integer", n.String())
	}
	return n.String(), nil
}

// Has reports whether ids contains the identity provider|userID.
func Has(ids []Identity, provider, userID string) bool {
	for _, id := range ids {
		if id.Provider == provider && id.UserID == userID {
			return true
		}
	}
	return false
}

// User is the part of a user's profile that linkbatch reads.
type User struct {
	UserID        string     `json:"user_id"`
	Email         string     `json:"email,omitempty"`
	EmailVerified bool       `json:"email_verified"`
	Identities    []Identity `json:"identities"`
}

// RateLimit is what the x-ratelimit-* headers of one response said.
// Known is false when the response carried none of them.
type RateLimit struct {
	Known     bool
	Limit     int       // x-ratelimit-limit: bucket size
	Remaining int       // x-ratelimit-remaining
	Reset     time.Time // x-ratelimit-reset: when the bucket is full again
}

// Response describes one HTTP exchange with the tenant. It is returned, when
// a response arrived, alongside the error of a failed call too.
type Response struct {
	StatusCode int
	RateLimit  RateLimit
	// Date is the server's Date header, zero if absent; it lets a caller
	// relate Reset to the server's clock.
	Date time.Time
	// BodyErr is set by Link when a 2xx status arrived (the link happened)
	// but its body could not be read within its limit and time, or
	// decoded. Its text holds no secret.
	BodyErr error
}

// Created reports whether the answer was 201 Created, the only success the
// API documents for a link.
func (r *Response) Created() bool { return r.StatusCode == 201 }
