package linkertest

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"

	"github.com/linkbatch/linkbatch/linker"
)

// This file holds the users' metadata and the two endpoints that change
// them besides linking: PATCH /api/v2/users/{id} and
// DELETE /api/v2/users/{id}/identities/{provider}/{user_id} (unlink).
//
// What the Management API documents, and the fake does:
//   - PATCH merges user_metadata and app_metadata at the root level only: a
//     key set to null is deleted, any other value replaces the old one
//     whole (a nested object is not merged into the old one), and a
//     metadata object patched with {} is removed entirely.
//   - Linking discards the secondary's metadata (the secondary user is
//     deleted with it).
//   - Unlinking removes the identity from the primary's identities and
//     makes it a user again, under its old user id, with no metadata; the
//     answer is 200 with the identities left on the primary. Removing the
//     primary's own identity is refused: 400 "Main identity cannot be
//     removed.".
//
// Not documented, chosen here: unlinking an identity that the user does not
// hold answers 404 with errorCode inexistent_identity; PATCH accepts only
// user_metadata, app_metadata, email and email_verified (other properties of
// the real schema are refused with a 400 that says the fake does not model
// them, so that a test cannot rely on them silently).

// Answer texts of these endpoints.
const (
	msgMainIdentity     = "Main identity cannot be removed."
	msgIdentityNotHeld  = "The identity does not exist for this user."
	msgPatchScope       = "Insufficient scope; expected any of: update:users, update:users_app_metadata, update:current_user_metadata."
	pathErrorPrefix     = "Path validation error: "
	codeInvalidURI      = "invalid_uri"
	codeOperationDenied = "operation_not_supported"
)

var patchScopes = []string{"update:users", "update:users_app_metadata", "update:current_user_metadata"}

// unmodelled are properties of the real PATCH schema that the fake does not
// apply.
var unmodelled = map[string]bool{
	"blocked": true, "phone_number": true, "phone_verified": true, "given_name": true, "family_name": true,
	"name": true, "nickname": true, "picture": true, "verify_email": true, "verify_phone_number": true,
	"password": true, "connection": true, "client_id": true, "username": true,
}

// cloneObject deep-copies a JSON object as decoded (maps, slices and
// scalars); nil stays nil.
func cloneObject(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return cloneObject(v)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = cloneValue(x)
		}
		return out
	}
	return v
}

// mergeMetadata returns cur patched as PATCH does: {} removes the object
// (nil), a null value deletes its key, any other value replaces the key's
// value whole.
func mergeMetadata(cur, patch map[string]any) map[string]any {
	if len(patch) == 0 {
		return nil
	}
	out := cloneObject(cur)
	if out == nil {
		out = make(map[string]any, len(patch))
	}
	for k, v := range patch {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = cloneValue(v)
	}
	return out
}

// addMetadata adds the metadata objects a user has to its JSON document.
func addMetadata(doc map[string]any, u *User) {
	if u.UserMetadata != nil {
		doc["user_metadata"] = cloneObject(u.UserMetadata)
	}
	if u.AppMetadata != nil {
		doc["app_metadata"] = cloneObject(u.AppMetadata)
	}
}

// unlinkRoute decodes the escaped provider and user_id segments of an
// unlink path.
func unlinkRoute(id, escProvider, escUserID string) route {
	provider, err1 := url.PathUnescape(escProvider)
	userID, err2 := url.PathUnescape(escUserID)
	if err1 != nil || err2 != nil || provider == "" || userID == "" {
		return route{}
	}
	return route{kind: routeUnlink, id: id, provider: provider, identity: userID}
}

// serveUserWrite answers a PATCH or an unlink, with the connection faults
// drawn for it.
func (s *Server) serveUserWrite(w http.ResponseWriter, r *http.Request, rt route, body []byte, bodyErr error, d draw) {
	if d.dropBefore {
		s.count(func(st *Stats) { st.DroppedBefore++ })
		hijackClose(w)
		return
	}
	var status int
	var payload any
	if rt.kind == routePatch {
		status, payload = s.handlePatch(r, rt.id, body, bodyErr)
	} else {
		status, payload = s.handleUnlink(r, rt)
	}
	if d.dropAfter {
		s.count(func(st *Stats) { st.DroppedAfter++ })
		hijackClose(w)
		return
	}
	s.writeJSON(w, status, payload)
}

// handlePatch authorizes, validates and applies PATCH /api/v2/users/{id},
// answering with the user as GET does.
func (s *Server) handlePatch(r *http.Request, id string, body []byte, bodyErr error) (int, any) {
	bad := func(status int, code, msg string) (int, any) { return status, newAPIError(status, code, msg) }
	if status, code, msg := s.authorize(r, patchScopes, msgPatchScope); status != 0 {
		return bad(status, code, msg)
	}
	if bodyErr != nil {
		return bodyReadError(bodyErr)
	}
	obj, msg := decodePatchBody(r.Header.Get("Content-Type"), body)
	if msg != "" {
		return bad(http.StatusBadRequest, codeInvalidBody, msg)
	}
	var um, am map[string]any
	var email *string
	var verified *bool
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		v := obj[k]
		switch k {
		case "user_metadata", "app_metadata":
			m, ok := v.(map[string]any)
			if !ok {
				return bad(http.StatusBadRequest, codeInvalidBody, payloadError("Expected type object but found type "+jsonType(v), k))
			}
			if k == "user_metadata" {
				um = m
			} else {
				am = m
			}
		case "email":
			e, ok := v.(string)
			if !ok || e == "" {
				return bad(http.StatusBadRequest, codeInvalidBody, payloadError("Expected type string but found type "+jsonType(v), k))
			}
			email = &e
		case "email_verified":
			b, ok := v.(bool)
			if !ok {
				return bad(http.StatusBadRequest, codeInvalidBody, payloadError("Expected type boolean but found type "+jsonType(v), k))
			}
			verified = &b
		default:
			if unmodelled[k] {
				return bad(http.StatusBadRequest, codeInvalidBody, payloadError("linkertest does not model this property", k))
			}
			return bad(http.StatusBadRequest, codeInvalidBody, payloadError("Additional properties not allowed: "+k, ""))
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return bad(http.StatusNotFound, codeInexistentUser, msgUserNotFound)
	}
	wipes := 0
	if _, sent := obj["user_metadata"]; sent {
		u.UserMetadata = mergeMetadata(u.UserMetadata, um)
		if len(um) == 0 {
			wipes++
		}
	}
	if _, sent := obj["app_metadata"]; sent {
		u.AppMetadata = mergeMetadata(u.AppMetadata, am)
		if len(am) == 0 {
			wipes++
		}
	}
	if wipes > 0 {
		s.count(func(st *Stats) { st.MetadataWipes += wipes })
	}
	if email != nil {
		u.Email = *email
	}
	if verified != nil {
		u.EmailVerified = *verified
	}
	doc := map[string]any{
		"user_id": u.UserID, "email": u.Email, "email_verified": u.EmailVerified,
		"identities": s.wireIdentities(u.Identities),
	}
	addMetadata(doc, u)
	return http.StatusOK, doc
}

// decodePatchBody parses a JSON object body, keeping numbers exact.
func decodePatchBody(contentType string, body []byte) (map[string]any, string) {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/json" {
		return nil, payloadError("Unsupported Content-Type (want application/json)", "")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, payloadError("Invalid JSON", "")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, payloadError("Invalid JSON", "")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, payloadError("Expected type object but found type "+jsonType(v), "")
	}
	if len(obj) == 0 {
		return nil, payloadError("Too few properties defined (0), minimum 1", "")
	}
	return obj, ""
}

// handleUnlink authorizes and applies
// DELETE /api/v2/users/{id}/identities/{provider}/{user_id}.
func (s *Server) handleUnlink(r *http.Request, rt route) (int, any) {
	bad := func(status int, code, msg string) (int, any) { return status, newAPIError(status, code, msg) }
	if status, code, msg := s.authorize(r, linkScopes, msgLinkScope); status != 0 {
		return bad(status, code, msg)
	}
	if !linker.ValidProvider(rt.provider) {
		return bad(http.StatusBadRequest, codeInvalidURI, pathErrorPrefix+"'No enum match' on property provider.")
	}
	key := identKey{rt.provider, rt.identity}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.users[rt.id]
	if !ok {
		return bad(http.StatusNotFound, codeInexistentUser, msgUserNotFound)
	}
	if p.Identities[0].key() == key {
		return bad(http.StatusBadRequest, codeOperationDenied, msgMainIdentity)
	}
	i := slices.IndexFunc(p.Identities, func(id Identity) bool { return id.key() == key })
	if i < 0 {
		return bad(http.StatusNotFound, codeInexistentIdent, msgIdentityNotHeld)
	}
	id := p.Identities[i]
	// A new slice: wire values and snapshots taken earlier keep the old one.
	p.Identities = slices.Concat(p.Identities[:i], p.Identities[i+1:])
	recreated := &User{UserID: id.Provider + "|" + id.UserID}
	if e, ok := id.ProfileData["email"].(string); ok {
		recreated.Email = e
	}
	if v, ok := id.ProfileData["email_verified"].(bool); ok {
		recreated.EmailVerified = v
	}
	id.ProfileData = nil
	recreated.Identities = []Identity{id}
	s.users[recreated.UserID] = recreated
	s.owner[key] = recreated.UserID
	s.mainKey[recreated.UserID] = key
	return http.StatusOK, s.wireIdentities(p.Identities)
}
