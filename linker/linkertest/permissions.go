package linkertest

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"slices"
)

// This file holds the permissions of users and roles and the endpoints
// that read and assign a user's:
//
//	GET  /api/v2/users/{id}/permissions   (read:users)
//	POST /api/v2/users/{id}/permissions   (update:users)
//
// What the Management API documents, and the fake does: the GET lists the
// permissions assigned to the user directly and those of the roles
// assigned to it, each once, with sources saying how it is held
// ({source_id, source_name, source_type: "DIRECT" or "ROLE"}); it is
// paged as the roles are (see roles.go). The POST takes {"permissions":
// [{resource_server_identifier, permission_name}, ...]} and answers 201
// with no body; assigning a permission the user holds directly changes
// nothing. Linking deletes the secondary with its permissions; unlinking
// recreates it with none.
//
// Not documented, chosen here: the APIs and their permissions are not
// checked against a catalogue (any identifier and name are accepted).

// Permission is a permission of an API: its identifier and the
// permission's name.
type Permission struct {
	API, Name string
}

// Answer texts of these endpoints.
const (
	msgPermsReadScope   = "Insufficient scope; expected any of: read:users."
	msgPermsAssignScope = "Insufficient scope; expected any of: update:users."
)

// Route kinds of this file.
const (
	routeUserPerms   = iota + 200 // GET /api/v2/users/{id}/permissions
	routeAssignPerms              // POST /api/v2/users/{id}/permissions
)

// AddRolePermissions gives the role id the permissions perms: a user
// holding the role holds them through it.
func (s *Server) AddRolePermissions(id string, perms ...Permission) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grants.rolePerms == nil {
		s.grants.rolePerms = map[string][]Permission{}
	}
	s.grants.rolePerms[id] = append(s.grants.rolePerms[id], perms...)
}

// handlePermList answers GET /api/v2/users/{id}/permissions.
func (s *Server) handlePermList(r *http.Request, rt route) (int, any) {
	return s.listAnswer(r, []string{"read:users"}, msgPermsReadScope, "permissions", func() ([]map[string]any, int, any) {
		u, ok := s.users[rt.id]
		if !ok {
			return nil, http.StatusNotFound, newAPIError(http.StatusNotFound, codeInexistentUser, msgUserNotFound)
		}
		var order []Permission
		sources := map[Permission][]map[string]any{}
		add := func(p Permission, src map[string]any) {
			if _, seen := sources[p]; !seen {
				order = append(order, p)
			}
			sources[p] = append(sources[p], src)
		}
		for _, p := range u.Permissions {
			add(p, map[string]any{"source_id": "", "source_name": "", "source_type": "DIRECT"})
		}
		for _, role := range u.Roles {
			for _, p := range s.grants.rolePerms[role] {
				add(p, map[string]any{"source_id": role, "source_name": s.grants.roles[role], "source_type": "ROLE"})
			}
		}
		var all []map[string]any
		for _, p := range order {
			all = append(all, map[string]any{"permission_name": p.Name, "description": "", "resource_server_name": p.API,
				"resource_server_identifier": p.API, "sources": sources[p]})
		}
		return all, 0, nil
	})
}

// handlePermWrite answers POST /api/v2/users/{id}/permissions.
func (s *Server) handlePermWrite(r *http.Request, rt route, body []byte, bodyErr error) (int, any) {
	bad := func(status int, code, msg string) (int, any) { return status, newAPIError(status, code, msg) }
	if status, code, msg := s.authorize(r, []string{"update:users"}, msgPermsAssignScope); status != 0 {
		return bad(status, code, msg)
	}
	if bodyErr != nil {
		return bodyReadError(bodyErr)
	}
	perms, msg := decodePermissions(r.Header.Get("Content-Type"), body)
	if msg != "" {
		return bad(http.StatusBadRequest, codeInvalidBody, msg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[rt.id]
	if !ok {
		return bad(http.StatusNotFound, codeInexistentUser, msgUserNotFound)
	}
	have := slices.Clone(u.Permissions)
	for _, p := range perms {
		if !slices.Contains(have, p) {
			have = append(have, p)
		}
	}
	u.Permissions = have
	return http.StatusCreated, nil
}

// decodePermissions decodes a body {"permissions": [{"resource_server_identifier":
// "...", "permission_name": "..."}, ...]}: one property, an array of at
// least one object with both (non-empty) and nothing else.
func decodePermissions(contentType string, body []byte) ([]Permission, string) {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/json" {
		return nil, payloadError("Unsupported Content-Type (want application/json)", "")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, payloadError("Invalid JSON", "")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, payloadError("Invalid JSON", "")
	}
	for k := range obj {
		if k != "permissions" {
			return nil, payloadError("Additional properties not allowed: "+k, "")
		}
	}
	raw, ok := obj["permissions"]
	if !ok {
		return nil, payloadError("Missing required property: permissions", "")
	}
	var items []map[string]any
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, payloadError("Expected type array of objects", "permissions")
	}
	if len(items) == 0 {
		return nil, payloadError("Array is too short", "permissions")
	}
	perms := make([]Permission, len(items))
	for i, it := range items {
		for k := range it {
			if k != "resource_server_identifier" && k != "permission_name" {
				return nil, payloadError("Additional properties not allowed: "+k, "permissions")
			}
		}
		api, _ := it["resource_server_identifier"].(string)
		name, _ := it["permission_name"].(string)
		if api == "" || name == "" {
			return nil, payloadError("Missing required property: resource_server_identifier or permission_name", "permissions")
		}
		perms[i] = Permission{API: api, Name: name}
	}
	return perms, ""
}
