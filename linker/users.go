package linker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// Profile is a user as GET and PATCH /api/v2/users/{id} return it, with its
// metadata. Metadata objects are nil when the user has none; numbers in them
// are json.Number, so that they are written back unchanged.
type Profile struct {
	User
	UserMetadata map[string]any `json:"user_metadata,omitempty"`
	AppMetadata  map[string]any `json:"app_metadata,omitempty"`
}

// UnmarshalJSON decodes a user document, keeping the numbers of its metadata
// as json.Number.
func (p *Profile) UnmarshalJSON(b []byte) error {
	var u User
	if err := json.Unmarshal(b, &u); err != nil {
		return err
	}
	var raw struct {
		UserMetadata json.RawMessage `json:"user_metadata"`
		AppMetadata  json.RawMessage `json:"app_metadata"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	um, err := decodeObject(raw.UserMetadata)
	if err != nil {
		return fmt.Errorf("user_metadata: %w", err)
	}
	am, err := decodeObject(raw.AppMetadata)
	if err != nil {
		return fmt.Errorf("app_metadata: %w", err)
	}
	*p = Profile{User: u, UserMetadata: um, AppMetadata: am}
	return nil
}

// decodeObject decodes a JSON object with numbers as json.Number; absent or
// null gives nil.
func decodeObject(raw json.RawMessage) (map[string]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// UserPatch is a change to a user's metadata, sent as PATCH
// /api/v2/users/{id}. The API merges each object at its root level: a key
// whose value is nil is deleted, any other value replaces the key's value
// whole (a nested object is not merged). A nil map is not sent.
//
// An empty, non-nil map is refused: the API removes the whole metadata
// object when it is patched with {}, which is never what a merge means.
type UserPatch struct {
	UserMetadata map[string]any
	AppMetadata  map[string]any
}

// body validates p and returns its JSON body.
func (p UserPatch) body() ([]byte, error) {
	if p.UserMetadata == nil && p.AppMetadata == nil {
		return nil, fmt.Errorf("%w: the patch changes nothing", ErrInvalidRequest)
	}
	if p.UserMetadata != nil && len(p.UserMetadata) == 0 {
		return nil, fmt.Errorf("%w: an empty user_metadata would remove the user's metadata", ErrInvalidRequest)
	}
	if p.AppMetadata != nil && len(p.AppMetadata) == 0 {
		return nil, fmt.Errorf("%w: an empty app_metadata would remove the user's metadata", ErrInvalidRequest)
	}
	b, err := json.Marshal(struct {
		UserMetadata map[string]any `json:"user_metadata,omitempty"`
		AppMetadata  map[string]any `json:"app_metadata,omitempty"`
	}{p.UserMetadata, p.AppMetadata})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return b, nil
}

// GetProfile sends GET /api/v2/users/{id} and returns the user with its
// metadata. Errors are as for [Client.Link], wrapped as "get user ID: ...".
func (c *Client) GetProfile(ctx context.Context, id string) (*Profile, *Response, error) {
	if err := checkPathID(id); err != nil {
		return nil, nil, fmt.Errorf("get user %s: %w", id, err)
	}
	var p Profile
	resp, err := c.send(ctx, http.MethodGet, c.userURL(id, "", nil), nil, &p)
	if err != nil {
		return nil, resp, fmt.Errorf("get user %s: %w", id, err)
	}
	return &p, resp, nil
}

// PatchUser sends PATCH /api/v2/users/{id} with the metadata of patch and
// returns the user as the API answers it (200). A patch that changes
// nothing or holds an empty object is refused before anything is sent,
// wrapping [ErrInvalidRequest]. Errors are as for [Client.Link], wrapped as
// "patch user ID: ...". It is safe for concurrent use.
func (c *Client) PatchUser(ctx context.Context, id string, patch UserPatch) (*Profile, *Response, error) {
	if err := checkPathID(id); err != nil {
		return nil, nil, fmt.Errorf("patch user %s: %w", id, err)
	}
	body, err := patch.body()
	if err != nil {
		return nil, nil, fmt.Errorf("patch user %s: %w", id, err)
	}
	var p Profile
	resp, err := c.send(ctx, http.MethodPatch, c.userURL(id, "", nil), body, &p)
	if err != nil {
		return nil, resp, fmt.Errorf("patch user %s: %w", id, err)
	}
	return &p, resp, nil
}

// Unlink sends DELETE /api/v2/users/{primaryID}/identities/{provider}/{userID}
// and returns the identities left on the primary (200). The unlinked
// identity becomes a user again, under the id provider|userID, with no
// metadata. userID is the identity's id without the provider prefix, as in
// [LinkRequest]. Errors are as for [Client.Link], wrapped as
// "unlink PROVIDER|USERID from PRIMARY: ..."; invalid ids wrap
// [ErrInvalidRequest]. It is safe for concurrent use.
func (c *Client) Unlink(ctx context.Context, primaryID, provider, userID string) ([]Identity, *Response, error) {
	wrap := func(err error) error { return fmt.Errorf("unlink %s|%s from %s: %w", provider, userID, primaryID, err) }
	if err := checkPathID(primaryID); err != nil {
		return nil, nil, wrap(err)
	}
	if !ValidProvider(provider) {
		return nil, nil, wrap(fmt.Errorf("%w: provider %q is not a known identity provider", ErrInvalidRequest, provider))
	}
	if err := checkPathID(userID); err != nil {
		return nil, nil, wrap(err)
	}
	u := c.userURL(primaryID, "/identities/"+url.PathEscape(provider)+"/"+url.PathEscape(userID), nil)
	var ids []Identity
	resp, err := c.send(ctx, http.MethodDelete, u, nil, &ids)
	if err != nil {
		return nil, resp, wrap(err)
	}
	return ids, resp, nil
}
