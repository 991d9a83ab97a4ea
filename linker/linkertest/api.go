package linkertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/linkbatch/linkbatch/linker"
)

// maxBody is the largest request body read.
const maxBody = 64 << 10

// Answer texts.
const (
	msgTooMany          = "Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers."
	msgUserNotFound     = "User not found."
	msgInvalidLinkWith  = "Invalid token (link_with)."
	codeInvalidBody     = "invalid_body"
	payloadErrorPrefix  = "Payload validation error: "
	queryErrorPrefix    = "Query validation error: "
	codeInvalidQuery    = "invalid_query_string"
	codeInexistentUser  = "inexistent_user"
	codeIdentityExists  = "identity_conflict"
	codeInexistentIdent = "inexistent_identity"
)

// apiError is the Management API's error body.
type apiError struct {
	StatusCode int    `json:"statusCode"`
	Error      string `json:"error"`
	Message    string `json:"message"`
	ErrorCode  string `json:"errorCode"`
}

func newAPIError(status int, code, msg string) apiError {
	return apiError{StatusCode: status, Error: http.StatusText(status), Message: msg, ErrorCode: code}
}

// wireIdentity is an identity as the API renders it.
type wireIdentity struct {
	Connection        string         `json:"connection"`
	UserID            string         `json:"user_id"`
	Provider          string         `json:"provider"`
	IsSocial          bool           `json:"isSocial"`
	ProfileData       map[string]any `json:"profileData,omitempty"`
	AccessToken       string         `json:"access_token,omitempty"`
	RefreshToken      string         `json:"refresh_token,omitempty"`
	AccessTokenSecret string         `json:"access_token_secret,omitempty"`
}

// wireIdentities renders ids. The ProfileData maps are shared: the tenant
// never modifies one after creating it.
func (s *Server) wireIdentities(ids []Identity) []wireIdentity {
	out := make([]wireIdentity, len(ids))
	for i, id := range ids {
		out[i] = wireIdentity{
			Connection: id.Connection, UserID: id.UserID, Provider: id.Provider,
			IsSocial: id.IsSocial, ProfileData: id.ProfileData,
		}
		if s.idpTokens {
			out[i].AccessToken, out[i].RefreshToken = id.AccessToken, id.RefreshToken
			out[i].AccessTokenSecret = id.AccessTokenSecret
		}
	}
	return out
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(newAPIError(status, "internal_error", "Internal Server Error"))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
	s.count(func(st *Stats) {
		st.ByStatus[status]++
		if status == http.StatusTooManyRequests {
			st.RateLimited++
		}
	})
}

func (s *Server) writeError(w http.ResponseWriter, status int, code, msg string) {
	s.writeJSON(w, status, newAPIError(status, code, msg))
}

// route is what an /api/v2 request addresses.
type route struct {
	kind int
	id   string // decoded user id
	// For routeUnlink: the identity's provider and user_id, decoded.
	provider, identity string
	// For the roles of an organization's member: the organization's id.
	org string
}

const (
	routeNone   = iota
	routeGet    // GET /api/v2/users/{id}
	routeLink   // POST /api/v2/users/{id}/identities
	routePatch  // PATCH /api/v2/users/{id}
	routeUnlink // DELETE /api/v2/users/{id}/identities/{provider}/{user_id}
)

// parseRoute matches the escaped path, so that an id holding "%2F" is one
// segment.
func parseRoute(method, escapedPath string) route {
	segs := strings.Split(strings.TrimPrefix(escapedPath, "/api/v2/"), "/")
	if rt := grantRoute(method, segs); rt.kind != routeNone {
		return rt
	}
	if len(segs) < 2 || segs[0] != "users" {
		return route{}
	}
	id, err := url.PathUnescape(segs[1])
	if err != nil || id == "" {
		return route{}
	}
	switch {
	case len(segs) == 2 && method == http.MethodGet:
		return route{kind: routeGet, id: id}
	case len(segs) == 3 && segs[2] == "identities" && method == http.MethodPost:
		return route{kind: routeLink, id: id}
	case len(segs) == 2 && method == http.MethodPatch:
		return route{kind: routePatch, id: id}
	case len(segs) == 5 && segs[2] == "identities" && method == http.MethodDelete:
		return unlinkRoute(id, segs[3], segs[4])
	}
	return route{}
}

// serveAPI answers an /api/v2 request: rate limit, then faults, then the
// endpoint.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, path string) {
	rt := parseRoute(r.Method, path)
	s.count(func(st *Stats) {
		switch rt.kind {
		case routeLink:
			st.Posts++
			st.PostsByPrimary[rt.id]++
		case routeGet:
			st.Gets++
		case routePatch:
			st.Patches++
		case routeUnlink:
			st.Unlinks++
		}
	})
	if s.refuseGlobal(w, s.now()) {
		return
	}
	v := s.bucket.take(s.now())
	v.setHeaders(w.Header())
	if !v.ok {
		s.writeError(w, http.StatusTooManyRequests, "too_many_requests", msgTooMany)
		return
	}
	// Read the body before any wait: only then does the server notice a
	// client that goes away.
	var body []byte
	var bodyErr error
	if rt.kind == routeLink || rt.kind == routePatch || isGrantWrite(rt.kind) {
		body, bodyErr = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	}
	d := s.faults.draw(rt.kind == routeLink || rt.kind == routePatch || rt.kind == routeUnlink || isGrantWrite(rt.kind))
	ctx := r.Context()
	if d.hang > 0 {
		s.count(func(st *Stats) { st.Stalled++ })
	}
	if !sleep(ctx, d.delay) || !sleep(ctx, d.hang) {
		s.count(func(st *Stats) { st.Abandoned++ })
		hijackClose(w)
		return
	}
	if d.status5xx != 0 {
		s.count(func(st *Stats) { st.Injected5xx++ })
		s.writeError(w, d.status5xx, "server_error", http.StatusText(d.status5xx))
		return
	}
	switch rt.kind {
	case routeGet:
		s.serveGet(w, r, rt.id)
	case routeLink:
		if d.dropBefore {
			s.count(func(st *Stats) { st.DroppedBefore++ })
			hijackClose(w)
			return
		}
		status, payload := s.handleLink(r, rt.id, body, bodyErr)
		if d.dropAfter {
			s.count(func(st *Stats) { st.DroppedAfter++ })
			hijackClose(w)
			return
		}
		s.writeJSON(w, status, payload)
	case routePatch, routeUnlink:
		s.serveUserWrite(w, r, rt, body, bodyErr, d)
	case routeUserRoles, routeAssignRoles, routeUserOrgs, routeAddMembers, routeUserPerms, routeAssignPerms,
		routeMemberRoles, routeAssignMemberRoles:
		s.serveGrant(w, r, rt, body, bodyErr, d)
	default:
		s.writeError(w, http.StatusNotFound, "not_found", "Not Found")
	}
}

// serveGet answers GET /api/v2/users/{id}.
func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, id string) {
	if status, code, msg := s.authorize(r, readScopes, msgReadScope); status != 0 {
		s.writeError(w, status, code, msg)
		return
	}
	q := r.URL.Query()
	include := true
	switch q.Get("include_fields") {
	case "", "true":
	case "false":
		include = false
	default:
		s.writeError(w, http.StatusBadRequest, codeInvalidQuery,
			queryErrorPrefix+"'Expected type boolean but found type string' on property include_fields.")
		return
	}
	var fields map[string]bool
	for f := range strings.SplitSeq(q.Get("fields"), ",") {
		if f = strings.TrimSpace(f); f != "" {
			if fields == nil {
				fields = map[string]bool{}
			}
			fields[f] = true
		}
	}

	s.mu.Lock()
	u, ok := s.users[id]
	var doc map[string]any
	if ok {
		doc = map[string]any{
			"user_id":        u.UserID,
			"email":          u.Email,
			"email_verified": u.EmailVerified,
			"identities":     s.wireIdentities(u.Identities),
		}
		addMetadata(doc, u)
	}
	s.mu.Unlock()
	if !ok {
		s.writeError(w, http.StatusNotFound, codeInexistentUser, msgUserNotFound)
		return
	}
	if fields != nil {
		maps.DeleteFunc(doc, func(k string, _ any) bool { return fields[k] != include })
	}
	s.writeJSON(w, http.StatusOK, doc)
}

// linkBody is a validated link request body.
type linkBody struct {
	provider, userID, connectionID string
	linkWith                       string
	hasLinkWith                    bool
}

// handleLink authorizes, validates and applies a link request, returning
// the answer to send.
func (s *Server) handleLink(r *http.Request, primaryID string, body []byte, bodyErr error) (int, any) {
	if status, code, msg := s.authorize(r, linkScopes, msgLinkScope); status != 0 {
		return status, newAPIError(status, code, msg)
	}
	if bodyErr != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](bodyErr); tooBig {
			return http.StatusRequestEntityTooLarge, newAPIError(http.StatusRequestEntityTooLarge, codeInvalidBody,
				payloadErrorPrefix+"'Payload too large'.")
		}
		return http.StatusBadRequest, newAPIError(http.StatusBadRequest, codeInvalidBody, payloadErrorPrefix+"'Unreadable body'.")
	}
	obj, msg := decodeLinkBody(r.Header.Get("Content-Type"), body)
	if msg == "" {
		var lb linkBody
		lb, msg = validateLink(obj)
		if msg == "" {
			return s.applyLink(primaryID, lb)
		}
	}
	return http.StatusBadRequest, newAPIError(http.StatusBadRequest, codeInvalidBody, msg)
}

// applyLink runs the link semantics for a valid body.
func (s *Server) applyLink(primaryID string, lb linkBody) (int, any) {
	bad := func(status int, code, msg string) (int, any) { return status, newAPIError(status, code, msg) }
	sec := identKey{lb.provider, lb.userID}
	if lb.hasLinkWith {
		target, ok := s.linkWithTarget(lb.linkWith)
		if !ok {
			return bad(http.StatusBadRequest, "invalid_token", msgInvalidLinkWith)
		}
		if sec, ok = s.secondaryByID(target); !ok {
			return bad(http.StatusBadRequest, codeInexistentIdent, linker.MsgInexistentIdentity)
		}
	}
	outcome, ids := s.link(primaryID, sec)
	switch outcome {
	case linked:
		s.count(func(st *Stats) { st.LinksApplied++ })
		return http.StatusCreated, ids
	case primaryMissing:
		return bad(http.StatusNotFound, codeInexistentUser, msgUserNotFound)
	case sameIdentity:
		return bad(http.StatusBadRequest, codeInvalidBody, linker.MsgSameIdentity)
	case alreadyInPrimary:
		s.count(func(st *Stats) { st.Relinks++ })
		return bad(http.StatusConflict, codeIdentityExists, linker.MsgIdentityExists)
	case linkedElsewhere:
		s.count(func(st *Stats) { st.DoubleLinks++ })
	}
	return bad(http.StatusBadRequest, codeInexistentIdent, linker.MsgInexistentIdentity)
}

// decodeLinkBody parses a JSON or form body into a generic object; msg is
// the validation error otherwise.
func decodeLinkBody(contentType string, body []byte) (obj map[string]any, msg string) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = ""
	}
	switch mt {
	case "application/json":
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			if err == io.EOF {
				return nil, payloadError("Expected type object but found type null", "")
			}
			return nil, payloadError("Invalid JSON", "")
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, payloadError("Invalid JSON", "")
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, payloadError("Expected type object but found type "+jsonType(v), "")
		}
		return obj, ""
	case "application/x-www-form-urlencoded":
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, payloadError("Invalid form body", "")
		}
		obj = make(map[string]any, len(q))
		for k, vs := range q {
			if len(vs) == 1 {
				obj[k] = vs[0]
				continue
			}
			arr := make([]any, len(vs))
			for i, v := range vs {
				arr[i] = v
			}
			obj[k] = arr
		}
		return obj, ""
	}
	return nil, payloadError("Unsupported Content-Type (want application/json or application/x-www-form-urlencoded)", "")
}

var integerPattern = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// validateLink checks obj against LinkUserIdentityRequestContent and the
// rules its descriptions state.
func validateLink(obj map[string]any) (linkBody, string) {
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		switch k {
		case "provider", "connection_id", "user_id", "link_with":
		default:
			return linkBody{}, payloadError("Additional properties not allowed: "+k, "")
		}
	}
	if len(obj) == 0 {
		return linkBody{}, payloadError("Too few properties defined (0), minimum 1", "")
	}
	if v, ok := obj["link_with"]; ok {
		jwt, isString := v.(string)
		if !isString {
			return linkBody{}, payloadError("Expected type string but found type "+jsonType(v), "link_with")
		}
		if len(obj) > 1 {
			return linkBody{}, payloadError("link_with must be sent alone, without provider, user_id or connection_id", "")
		}
		return linkBody{linkWith: jwt, hasLinkWith: true}, ""
	}
	var lb linkBody
	v, hasProvider := obj["provider"]
	if hasProvider {
		p, ok := v.(string)
		if !ok {
			return linkBody{}, payloadError("Expected type string but found type "+jsonType(v), "provider")
		}
		if !linker.ValidProvider(p) {
			return linkBody{}, payloadError("No enum match", "provider")
		}
		lb.provider = p
	}
	if v, ok := obj["connection_id"]; ok {
		c, isString := v.(string)
		if !isString {
			return linkBody{}, payloadError("Expected type string but found type "+jsonType(v), "connection_id")
		}
		if !linker.ValidConnectionID(c) {
			return linkBody{}, payloadError("String does not match pattern ^con_[A-Za-z0-9]{16}$", "connection_id")
		}
		lb.connectionID = c
	}
	v, hasUserID := obj["user_id"]
	if hasUserID {
		switch u := v.(type) {
		case string:
			lb.userID = u
		case json.Number:
			if integerPattern.MatchString(u.String()) {
				lb.userID = u.String()
			}
		}
		if lb.userID == "" {
			return linkBody{}, payloadError("Data does not match any schemas from 'oneOf' (string of at least 1 character, or integer)", "user_id")
		}
	}
	switch {
	case !hasProvider:
		return linkBody{}, payloadError("Missing required property: provider", "")
	case !hasUserID:
		return linkBody{}, payloadError("Missing required property: user_id", "")
	}
	return lb, ""
}

// payloadError formats a body validation message; values are never quoted
// back, only property names.
func payloadError(detail, property string) string {
	if property != "" {
		return payloadErrorPrefix + "'" + detail + "' on property " + property + "."
	}
	return payloadErrorPrefix + "'" + detail + "'."
}

// jsonType names the JSON type of a value decoded with UseNumber.
func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		if integerPattern.MatchString(v.String()) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}
