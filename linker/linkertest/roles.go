package linkertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// This file holds the users' roles and organization memberships and the
// endpoints that read and grant them:
//
//	GET  /api/v2/users/{id}/roles                 (read:roles)
//	POST /api/v2/users/{id}/roles                 (update:users or create:role_members)
//	GET  /api/v2/users/{id}/organizations         (read:organizations)
//	POST /api/v2/organizations/{id}/members       (create:organization_members)
//	GET  /api/v2/organizations/{id}/members/{user_id}/roles
//	                                              (read:organization_member_roles)
//	POST /api/v2/organizations/{id}/members/{user_id}/roles
//	                                              (create:organization_member_roles)
//
// What the Management API documents, and the fake does: the GETs are paged
// with page (from 0), per_page (at most 100, default 50) and
// include_totals; with include_totals=true the answer is an object
// {roles|organizations, start, limit, total}, otherwise a bare array. The
// POSTs answer 204 with no body, and granting what a user already holds
// changes nothing. Linking deletes the secondary user with its roles and
// memberships; unlinking recreates it with none.
//
// Not documented, chosen here: an unknown role or organization is answered
// 404; a member id that is no user of the tenant is answered 400, and so
// are the roles of a user who is not a member of the organization.

// Answer texts of these endpoints.
const (
	msgRolesReadScope   = "Insufficient scope; expected any of: read:roles, read:role_members."
	msgRolesAssignScope = "Insufficient scope; expected any of: update:users, create:role_members."
	msgOrgsReadScope    = "Insufficient scope; expected any of: read:organizations."
	msgMembersScope     = "Insufficient scope; expected any of: create:organization_members."
	msgMemberRolesRead  = "Insufficient scope; expected any of: read:organization_member_roles."
	msgMemberRolesScope = "Insufficient scope; expected any of: create:organization_member_roles."
	msgNotMember        = "The user is not a member of the organization."
	msgRoleNotFound     = "The role does not exist."
	msgOrgNotFound      = "No organization found by that id."
	maxPerPage          = 100
	defaultPerPage      = 50
)

var (
	rolesReadScopes   = []string{"read:roles", "read:role_members"}
	rolesAssignScopes = []string{"update:users", "create:role_members"}
	orgsReadScopes    = []string{"read:organizations"}
	membersScopes     = []string{"create:organization_members"}
)

// Route kinds of this file.
const (
	routeUserRoles         = iota + 100 // GET /api/v2/users/{id}/roles
	routeAssignRoles                    // POST /api/v2/users/{id}/roles
	routeUserOrgs                       // GET /api/v2/users/{id}/organizations
	routeAddMembers                     // POST /api/v2/organizations/{id}/members
	routeMemberRoles                    // GET /api/v2/organizations/{id}/members/{user_id}/roles
	routeAssignMemberRoles              // POST /api/v2/organizations/{id}/members/{user_id}/roles
)

// grantRoute matches the escaped path segments (after /api/v2/) of the
// endpoints of this file; the zero route when none matches.
func grantRoute(method string, segs []string) route {
	if len(segs) == 5 && segs[0] == "organizations" && segs[2] == "members" && segs[4] == "roles" {
		return memberRolesRoute(method, segs[1], segs[3])
	}
	if len(segs) != 3 {
		return route{}
	}
	id, err := url.PathUnescape(segs[1])
	if err != nil || id == "" {
		return route{}
	}
	if kind, ok := grantKinds[[3]string{segs[0], segs[2], method}]; ok {
		return route{kind: kind, id: id}
	}
	return route{}
}

// grantKinds are the route kinds of the three-segment paths of this file,
// by their first and last segments and the method.
var grantKinds = map[[3]string]int{
	{"users", "roles", http.MethodGet}:            routeUserRoles,
	{"users", "roles", http.MethodPost}:           routeAssignRoles,
	{"users", "organizations", http.MethodGet}:    routeUserOrgs,
	{"organizations", "members", http.MethodPost}: routeAddMembers,
	{"users", "permissions", http.MethodGet}:      routeUserPerms,
	{"users", "permissions", http.MethodPost}:     routeAssignPerms,
}

// memberRolesRoute matches /api/v2/organizations/{org}/members/{id}/roles,
// its segments escaped.
func memberRolesRoute(method, org, id string) route {
	org, err1 := url.PathUnescape(org)
	id, err2 := url.PathUnescape(id)
	switch {
	case err1 != nil || err2 != nil || org == "" || id == "":
		return route{}
	case method == http.MethodGet:
		return route{kind: routeMemberRoles, id: id, org: org}
	case method == http.MethodPost:
		return route{kind: routeAssignMemberRoles, id: id, org: org}
	}
	return route{}
}

// isGrantWrite reports whether kind is one of this file's POSTs.
func isGrantWrite(kind int) bool {
	return kind == routeAssignRoles || kind == routeAddMembers || kind == routeAssignPerms || kind == routeAssignMemberRoles
}

// grants is the tenant's catalogue of roles and organizations, by id, with
// their names, and the permissions of the roles (see permissions.go);
// guarded by Server.mu.
type grants struct {
	roles, orgs map[string]string
	rolePerms   map[string][]Permission
}

// AddRole adds the role id (e.g. "rol_admin") named name to the tenant.
func (s *Server) AddRole(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grants.roles == nil {
		s.grants.roles = map[string]string{}
	}
	s.grants.roles[id] = name
}

// AddOrganization adds the organization id (e.g. "org_acme") named name to
// the tenant.
func (s *Server) AddOrganization(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grants.orgs == nil {
		s.grants.orgs = map[string]string{}
	}
	s.grants.orgs[id] = name
}

// serveGrant answers the endpoints of this file, with the connection
// faults drawn for it.
func (s *Server) serveGrant(w http.ResponseWriter, r *http.Request, rt route, body []byte, bodyErr error, d draw) {
	if d.dropBefore {
		s.count(func(st *Stats) { st.DroppedBefore++ })
		hijackClose(w)
		return
	}
	var status int
	var payload any
	switch rt.kind {
	case routeUserRoles, routeUserOrgs:
		status, payload = s.handleGrantList(r, rt)
	case routeUserPerms:
		status, payload = s.handlePermList(r, rt)
	case routeMemberRoles:
		status, payload = s.handleMemberRoles(r, rt)
	case routeAssignMemberRoles:
		status, payload = s.handleAssignMemberRoles(r, rt, body, bodyErr)
	case routeAssignPerms:
		status, payload = s.handlePermWrite(r, rt, body, bodyErr)
	default:
		status, payload = s.handleGrantWrite(r, rt, body, bodyErr)
	}
	if d.dropAfter {
		s.count(func(st *Stats) { st.DroppedAfter++ })
		hijackClose(w)
		return
	}
	if status == http.StatusNoContent || status == http.StatusCreated && payload == nil {
		w.WriteHeader(status)
		s.count(func(st *Stats) { st.ByStatus[status]++ })
		return
	}
	s.writeJSON(w, status, payload)
}

// handleGrantList answers GET /api/v2/users/{id}/roles and
// /organizations.
func (s *Server) handleGrantList(r *http.Request, rt route) (int, any) {
	scopes, scopeMsg, key := rolesReadScopes, msgRolesReadScope, "roles"
	if rt.kind == routeUserOrgs {
		scopes, scopeMsg, key = orgsReadScopes, msgOrgsReadScope, "organizations"
	}
	return s.listAnswer(r, scopes, scopeMsg, key, func() ([]map[string]any, int, any) {
		u, ok := s.users[rt.id]
		if !ok {
			return nil, http.StatusNotFound, newAPIError(http.StatusNotFound, codeInexistentUser, msgUserNotFound)
		}
		var all []map[string]any
		if rt.kind == routeUserOrgs {
			for _, id := range u.Organizations {
				all = append(all, map[string]any{"id": id, "name": s.grants.orgs[id], "display_name": s.grants.orgs[id]})
			}
			return all, 0, nil
		}
		for _, id := range u.Roles {
			all = append(all, map[string]any{"id": id, "name": s.grants.roles[id], "description": ""})
		}
		return all, 0, nil
	})
}

// listAnswer answers a paged list: it authorizes r for scopes, reads the
// page query, and pages under key what items returns, called with s.mu
// held; a status items returns other than 0 is answered with its payload
// instead.
func (s *Server) listAnswer(r *http.Request, scopes []string, scopeMsg, key string, items func() ([]map[string]any, int, any)) (int, any) {
	if status, code, msg := s.authorize(r, scopes, scopeMsg); status != 0 {
		return status, newAPIError(status, code, msg)
	}
	page, perPage, totals, msg := pageQuery(r.URL.Query())
	if msg != "" {
		return http.StatusBadRequest, newAPIError(http.StatusBadRequest, codeInvalidQuery, msg)
	}
	s.mu.Lock()
	all, status, payload := items()
	s.mu.Unlock()
	if status != 0 {
		return status, payload
	}
	return pagedAnswer(key, all, page, perPage, totals)
}

// pagedAnswer answers a paged list: the page of all (page from 0, of
// perPage items), as a bare array, or with totals as an object {key,
// start, limit, total}.
func pagedAnswer(key string, all []map[string]any, page, perPage int, totals bool) (int, any) {
	start := min(page*perPage, len(all))
	items := all[start:min(start+perPage, len(all))]
	if items == nil {
		items = []map[string]any{}
	}
	if !totals {
		return http.StatusOK, items
	}
	return http.StatusOK, map[string]any{key: items, "start": start, "limit": perPage, "total": len(all)}
}

// bodyReadError answers a request whose body could not be read: 413 when
// it was too large, 400 otherwise.
func bodyReadError(err error) (int, any) {
	if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
		return http.StatusRequestEntityTooLarge, newAPIError(http.StatusRequestEntityTooLarge, codeInvalidBody, payloadErrorPrefix+"'Payload too large'.")
	}
	return http.StatusBadRequest, newAPIError(http.StatusBadRequest, codeInvalidBody, payloadErrorPrefix+"'Unreadable body'.")
}

// pageQuery reads page, per_page and include_totals as the Management API
// validates them; msg is the 400 message of an invalid one.
func pageQuery(q url.Values) (page, perPage int, totals bool, msg string) {
	perPage = defaultPerPage
	num := func(name string, lo, hi int, dst *int) string {
		v := q.Get(name)
		if v == "" {
			return ""
		}
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			return queryErrorPrefix + "'Expected type integer but found type string' on property " + name + "."
		case n < lo:
			return queryErrorPrefix + "'Value " + v + " is less than minimum " + strconv.Itoa(lo) + "' on property " + name + "."
		case n > hi:
			return queryErrorPrefix + "'Value " + v + " is greater than maximum " + strconv.Itoa(hi) + "' on property " + name + "."
		}
		*dst = n
		return ""
	}
	if msg = num("page", 0, 1<<30, &page); msg != "" {
		return
	}
	if msg = num("per_page", 1, maxPerPage, &perPage); msg != "" {
		return
	}
	switch q.Get("include_totals") {
	case "", "false":
	case "true":
		totals = true
	default:
		msg = queryErrorPrefix + "'Expected type boolean but found type string' on property include_totals."
	}
	return
}

// handleGrantWrite answers POST /api/v2/users/{id}/roles and
// /api/v2/organizations/{id}/members.
func (s *Server) handleGrantWrite(r *http.Request, rt route, body []byte, bodyErr error) (int, any) {
	bad := func(status int, code, msg string) (int, any) { return status, newAPIError(status, code, msg) }
	scopes, scopeMsg, key := rolesAssignScopes, msgRolesAssignScope, "roles"
	if rt.kind == routeAddMembers {
		scopes, scopeMsg, key = membersScopes, msgMembersScope, "members"
	}
	if status, code, msg := s.authorize(r, scopes, scopeMsg); status != 0 {
		return bad(status, code, msg)
	}
	if bodyErr != nil {
		return bodyReadError(bodyErr)
	}
	ids, msg := decodeIDList(r.Header.Get("Content-Type"), body, key)
	if msg != "" {
		return bad(http.StatusBadRequest, codeInvalidBody, msg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt.kind == routeAssignRoles {
		u, ok := s.users[rt.id]
		if !ok {
			return bad(http.StatusNotFound, codeInexistentUser, msgUserNotFound)
		}
		for _, id := range ids {
			if _, ok := s.grants.roles[id]; !ok {
				return bad(http.StatusNotFound, "inexistent_role", msgRoleNotFound)
			}
		}
		u.Roles = addAll(u.Roles, ids)
		return http.StatusNoContent, nil
	}
	if _, ok := s.grants.orgs[rt.id]; !ok {
		return bad(http.StatusNotFound, "inexistent_organization", msgOrgNotFound)
	}
	for _, id := range ids {
		if _, ok := s.users[id]; !ok {
			return bad(http.StatusBadRequest, codeInvalidBody, "One or more of the users do not exist.")
		}
	}
	for _, id := range ids {
		u := s.users[id]
		u.Organizations = addAll(u.Organizations, []string{rt.id})
	}
	return http.StatusNoContent, nil
}

// addAll returns have with the ids of add it does not hold appended, in a
// new slice (snapshots taken earlier keep the old one).
func addAll(have, add []string) []string {
	out := slices.Clone(have)
	for _, id := range add {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// decodeIDList decodes a body {key: ["id", ...]}: a JSON object with that
// one property, an array of at least one non-empty string (at most 10
// members).
func decodeIDList(contentType string, body []byte, key string) ([]string, string) {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/json" {
		return nil, payloadError("Unsupported Content-Type (want application/json)", "")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, payloadError("Invalid JSON", "")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, payloadError("Invalid JSON", "")
	}
	for k := range obj {
		if k != key {
			return nil, payloadError("Additional properties not allowed: "+k, "")
		}
	}
	v, ok := obj[key]
	if !ok {
		return nil, payloadError("Missing required property: "+key, "")
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, payloadError("Expected type array but found type "+jsonType(v), key)
	}
	if len(arr) == 0 || key == "members" && len(arr) > 10 {
		return nil, payloadError("Array is too short or too long", key)
	}
	ids := make([]string, len(arr))
	for i, x := range arr {
		s, ok := x.(string)
		if !ok || s == "" {
			return nil, payloadError("Expected a non-empty string", key)
		}
		ids[i] = s
	}
	return ids, ""
}

// member returns the user rt names and whether it may hold roles in rt's
// organization, or the error to answer; called with s.mu held.
func (s *Server) member(rt route) (*User, int, any) {
	bad := func(status int, code, msg string) (*User, int, any) {
		return nil, status, newAPIError(status, code, msg)
	}
	if _, ok := s.grants.orgs[rt.org]; !ok {
		return bad(http.StatusNotFound, "inexistent_organization", msgOrgNotFound)
	}
	u, ok := s.users[rt.id]
	if !ok {
		return bad(http.StatusNotFound, codeInexistentUser, msgUserNotFound)
	}
	if !slices.Contains(u.Organizations, rt.org) {
		return bad(http.StatusBadRequest, codeInvalidBody, msgNotMember)
	}
	return u, 0, nil
}

// handleMemberRoles answers GET
// /api/v2/organizations/{id}/members/{user_id}/roles.
func (s *Server) handleMemberRoles(r *http.Request, rt route) (int, any) {
	return s.listAnswer(r, []string{"read:organization_member_roles"}, msgMemberRolesRead, "roles", func() ([]map[string]any, int, any) {
		u, status, payload := s.member(rt)
		if u == nil {
			return nil, status, payload
		}
		var all []map[string]any
		for _, id := range u.OrganizationRoles[rt.org] {
			all = append(all, map[string]any{"id": id, "name": s.grants.roles[id], "description": ""})
		}
		return all, 0, nil
	})
}

// handleAssignMemberRoles answers POST
// /api/v2/organizations/{id}/members/{user_id}/roles.
func (s *Server) handleAssignMemberRoles(r *http.Request, rt route, body []byte, bodyErr error) (int, any) {
	if status, code, msg := s.authorize(r, []string{"create:organization_member_roles"}, msgMemberRolesScope); status != 0 {
		return status, newAPIError(status, code, msg)
	}
	if bodyErr != nil {
		return bodyReadError(bodyErr)
	}
	ids, msg := decodeIDList(r.Header.Get("Content-Type"), body, "roles")
	if msg != "" {
		return http.StatusBadRequest, newAPIError(http.StatusBadRequest, codeInvalidBody, msg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, status, payload := s.member(rt)
	if u == nil {
		return status, payload
	}
	for _, id := range ids {
		if _, ok := s.grants.roles[id]; !ok {
			return http.StatusNotFound, newAPIError(http.StatusNotFound, "inexistent_role", msgRoleNotFound)
		}
	}
	roles := make(map[string][]string, len(u.OrganizationRoles)+1)
	for org, have := range u.OrganizationRoles {
		roles[org] = have
	}
	roles[rt.org] = addAll(roles[rt.org], ids)
	u.OrganizationRoles = roles
	return http.StatusNoContent, nil
}
