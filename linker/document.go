package linker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// idpTokenFields are the properties of an identity that hold the identity
// provider's tokens (read:user_idp_tokens): they never leave linkbatch.
var idpTokenFields = []string{"access_token", "refresh_token", "access_token_secret"}

// GetUserDocument sends GET /api/v2/users/{id} and returns the user twice:
// decoded as a Profile, and as the whole JSON object the API answered with
// the identity providers' tokens of its identities dropped (a backup of the
// user). Errors are as for [Client.GetProfile]. It is safe for concurrent
// use.
func (c *Client) GetUserDocument(ctx context.Context, id string) (*Profile, json.RawMessage, *Response, error) {
	if err := checkPathID(id); err != nil {
		return nil, nil, nil, fmt.Errorf("get user %s: %w", id, err)
	}
	var raw json.RawMessage
	resp, err := c.send(ctx, http.MethodGet, c.userURL(id, "", nil), nil, &raw)
	if err != nil {
		return nil, nil, resp, fmt.Errorf("get user %s: %w", id, err)
	}
	doc, err := DropIdPTokens(raw)
	if err == nil {
		var p Profile
		if err = json.Unmarshal(doc, &p); err == nil {
			return &p, doc, resp, nil
		}
	}
	return nil, nil, resp, &bodyError{fmt.Errorf("get user %s: decode %d answer: %w", id, resp.StatusCode, err)}
}

// DropIdPTokens returns the user document doc without the identity
// providers' tokens (access_token, refresh_token, access_token_secret) of
// its identities, numbers kept as written. It fails when doc is not a JSON
// object.
func DropIdPTokens(doc []byte) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("the user is null")
	}
	if ids, ok := m["identities"].([]any); ok {
		for _, x := range ids {
			if id, ok := x.(map[string]any); ok {
				for _, f := range idpTokenFields {
					delete(id, f)
				}
			}
		}
	}
	for _, f := range idpTokenFields {
		delete(m, f)
	}
	return json.Marshal(m)
}
