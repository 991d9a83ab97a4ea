package linker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// PerPage is the page size UserRoles and UserOrganizations ask for, the
// largest the Management API allows.
const PerPage = 100

// MaxMembers is the most user ids one AddOrganizationMembers request may
// carry.
const MaxMembers = 10

// Role is a role as GET /api/v2/users/{id}/roles returns it.
type Role struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Organization is an organization as GET /api/v2/users/{id}/organizations
// returns it.
type Organization struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name,omitempty"`
}

// Permission is a permission of an API (a resource server), as GET
// /api/v2/users/{id}/permissions returns it and POST assigns it.
type Permission struct {
	ResourceServerIdentifier string `json:"resource_server_identifier"`
	PermissionName           string `json:"permission_name"`
	// Sources says how the user holds it: assigned directly
	// (PermissionDirect) or through a role (PermissionFromRole), or both.
	// Not sent when assigning.
	Sources []PermissionSource `json:"sources,omitempty"`
}

// PermissionSource is one way a user holds a permission.
type PermissionSource struct {
	SourceID   string `json:"source_id,omitempty"`
	SourceName string `json:"source_name,omitempty"`
	SourceType string `json:"source_type"`
}

// Source types of a PermissionSource.
const (
	PermissionDirect   = "DIRECT"
	PermissionFromRole = "ROLE"
)

// Direct reports whether the permission is assigned to the user directly
// (not only through a role).
func (p Permission) Direct() bool {
	for _, s := range p.Sources {
		if s.SourceType == PermissionDirect {
			return true
		}
	}
	return false
}

// Page is one page of a paged list (include_totals=true): Items from
// Start, at most Limit of them, out of Total.
type Page[T any] struct {
	Items               []T
	Start, Limit, Total int
}

// More reports whether a page follows this one.
func (p Page[T]) More() bool { return len(p.Items) > 0 && p.Start+len(p.Items) < p.Total }

// UserRoles sends GET /api/v2/users/{id}/roles for the page (from 0) of
// PerPage roles, with the totals. A token without read:roles is answered
// 403 (see [IsForbidden]). Errors are as for [Client.Link], wrapped as
// "get roles of ID: ...". It is safe for concurrent use.
func (c *Client) UserRoles(ctx context.Context, id string, page int) (Page[Role], *Response, error) {
	return listPage[Role](ctx, c, id, "roles", page)
}

// UserOrganizations sends GET /api/v2/users/{id}/organizations for the
// page (from 0) of PerPage organizations, with the totals. A token without
// read:organizations is answered 403. Errors are as for [Client.Link],
// wrapped as "get organizations of ID: ...". It is safe for concurrent use.
func (c *Client) UserOrganizations(ctx context.Context, id string, page int) (Page[Organization], *Response, error) {
	return listPage[Organization](ctx, c, id, "organizations", page)
}

// UserPermissions sends GET /api/v2/users/{id}/permissions for the page
// (from 0) of PerPage permissions, with the totals: those assigned
// directly and those of the roles assigned directly, each with its
// Sources. It needs read:users. Errors are as for [Client.Link], wrapped
// as "get permissions of ID: ...". It is safe for concurrent use.
func (c *Client) UserPermissions(ctx context.Context, id string, page int) (Page[Permission], *Response, error) {
	return listPage[Permission](ctx, c, id, "permissions", page)
}

// AssignPermissions sends POST /api/v2/users/{id}/permissions
// {"permissions": [{resource_server_identifier, permission_name}, ...]}
// (201), assigning them to the user directly. Assigning one the user
// holds already changes nothing. It needs update:users. An empty list, an
// empty id, or a permission without its API or name is refused before
// anything is sent, wrapping [ErrInvalidRequest]. Errors are as for
// [Client.Link], wrapped as "assign permissions to ID: ...". It is safe for
// concurrent use.
func (c *Client) AssignPermissions(ctx context.Context, id string, perms []Permission) (*Response, error) {
	wrap := func(err error) error { return fmt.Errorf("assign permissions to %s: %w", id, err) }
	if err := checkPathID(id); err != nil {
		return nil, wrap(err)
	}
	if len(perms) == 0 {
		return nil, wrap(fmt.Errorf("%w: no permissions", ErrInvalidRequest))
	}
	type assigned struct {
		ResourceServerIdentifier string `json:"resource_server_identifier"`
		PermissionName           string `json:"permission_name"`
	}
	list := make([]assigned, len(perms))
	for i, p := range perms {
		if p.ResourceServerIdentifier == "" || p.PermissionName == "" {
			return nil, wrap(fmt.Errorf("%w: permission %d has no API identifier or no name", ErrInvalidRequest, i))
		}
		list[i] = assigned{p.ResourceServerIdentifier, p.PermissionName}
	}
	body, err := json.Marshal(map[string][]assigned{"permissions": list})
	if err != nil {
		return nil, wrap(err)
	}
	resp, err := c.send(ctx, http.MethodPost, c.userURL(id, "/permissions", nil), body, nil)
	return resp, wrapIf(err, wrap)
}

// listPage reads one page of /api/v2/users/{id}/{key}.
func listPage[T any](ctx context.Context, c *Client, id, key string, page int) (Page[T], *Response, error) {
	wrap := func(err error) error { return fmt.Errorf("get %s of %s: %w", key, id, err) }
	if err := checkPathID(id); err != nil {
		return Page[T]{}, nil, wrap(err)
	}
	return listPageAt[T](ctx, c, func(q url.Values) string { return c.userURL(id, "/"+key, q) }, key, page, wrap)
}

// listPageAt reads one page of the list at at(query), whose items are
// under key, wrapping its errors with wrap.
func listPageAt[T any](ctx context.Context, c *Client, at func(url.Values) string, key string, page int, wrap func(error) error) (Page[T], *Response, error) {
	var p Page[T]
	if page < 0 {
		return p, nil, wrap(fmt.Errorf("%w: page %d", ErrInvalidRequest, page))
	}
	q := url.Values{"page": {strconv.Itoa(page)}, "per_page": {strconv.Itoa(PerPage)}, "include_totals": {"true"}}
	var body struct {
		Roles         json.RawMessage `json:"roles"`
		Organizations json.RawMessage `json:"organizations"`
		Permissions   json.RawMessage `json:"permissions"`
		Start         int             `json:"start"`
		Limit         int             `json:"limit"`
		Total         int             `json:"total"`
	}
	resp, err := c.send(ctx, http.MethodGet, at(q), nil, &body)
	if err != nil {
		return p, resp, wrap(err)
	}
	items := body.Roles
	switch key {
	case "organizations":
		items = body.Organizations
	case "permissions":
		items = body.Permissions
	}
	if len(items) == 0 {
		err = fmt.Errorf("no %q in the answer", key)
	} else {
		err = json.Unmarshal(items, &p.Items)
	}
	if err != nil {
		return Page[T]{}, resp, &bodyError{wrap(fmt.Errorf("decode %d answer: %w", resp.StatusCode, err))}
	}
	p.Start, p.Limit, p.Total = body.Start, body.Limit, body.Total
	return p, resp, nil
}

// AssignRoles sends POST /api/v2/users/{id}/roles {"roles": roleIDs}
// (204). Assigning a role the user holds already changes nothing. It
// needs update:users or create:role_members. An empty list or an empty id
// is refused before anything is sent, wrapping [ErrInvalidRequest]. Errors
// are as for [Client.Link], wrapped as "assign roles to ID: ...". It is
// safe for concurrent use.
func (c *Client) AssignRoles(ctx context.Context, id string, roleIDs []string) (*Response, error) {
	wrap := func(err error) error { return fmt.Errorf("assign roles to %s: %w", id, err) }
	if err := checkPathID(id); err != nil {
		return nil, wrap(err)
	}
	body, err := idList("roles", roleIDs, 0)
	if err != nil {
		return nil, wrap(err)
	}
	resp, err := c.send(ctx, http.MethodPost, c.userURL(id, "/roles", nil), body, nil)
	return resp, wrapIf(err, wrap)
}

// AddOrganizationMembers sends POST /api/v2/organizations/{orgID}/members
// {"members": userIDs} (204), at most [MaxMembers] ids. Adding a member
// again changes nothing. It needs create:organization_members. Invalid
// ids or lists are refused before anything is sent, wrapping
// [ErrInvalidRequest]. Errors are as for [Client.Link], wrapped as
// "add members to organization ORG: ...". It is safe for concurrent use.
func (c *Client) AddOrganizationMembers(ctx context.Context, orgID string, userIDs []string) (*Response, error) {
	wrap := func(err error) error { return fmt.Errorf("add members to organization %s: %w", orgID, err) }
	if err := checkPathID(orgID); err != nil {
		return nil, wrap(err)
	}
	body, err := idList("members", userIDs, MaxMembers)
	if err != nil {
		return nil, wrap(err)
	}
	u := c.root + "/api/v2/organizations/" + url.PathEscape(orgID) + "/members"
	resp, err := c.send(ctx, http.MethodPost, u, body, nil)
	return resp, wrapIf(err, wrap)
}

// OrganizationMemberRoles sends GET
// /api/v2/organizations/{orgID}/members/{id}/roles for the page (from 0)
// of PerPage roles the user holds within the organization, with the
// totals. It needs read:organization_member_roles. Errors are as for
// [Client.Link], wrapped as "get roles of ID in organization ORG: ...". It
// is safe for concurrent use.
func (c *Client) OrganizationMemberRoles(ctx context.Context, orgID, id string, page int) (Page[Role], *Response, error) {
	wrap := func(err error) error { return fmt.Errorf("get roles of %s in organization %s: %w", id, orgID, err) }
	if err := checkPathID(orgID); err != nil {
		return Page[Role]{}, nil, wrap(err)
	}
	if err := checkPathID(id); err != nil {
		return Page[Role]{}, nil, wrap(err)
	}
	at := func(q url.Values) string { return c.memberURL(orgID, id, "/roles", q) }
	return listPageAt[Role](ctx, c, at, "roles", page, wrap)
}

// AssignOrganizationMemberRoles sends POST
// /api/v2/organizations/{orgID}/members/{id}/roles {"roles": roleIDs}
// (204): roles the member holds within the organization. The user must be
// a member already. It needs create:organization_member_roles. An empty
// list or id is refused before anything is sent, wrapping
// [ErrInvalidRequest]. Errors are as for [Client.Link], wrapped as
// "assign roles to ID in organization ORG: ...". It is safe for
// concurrent use.
func (c *Client) AssignOrganizationMemberRoles(ctx context.Context, orgID, id string, roleIDs []string) (*Response, error) {
	wrap := func(err error) error { return fmt.Errorf("assign roles to %s in organization %s: %w", id, orgID, err) }
	if err := checkPathID(orgID); err != nil {
		return nil, wrap(err)
	}
	if err := checkPathID(id); err != nil {
		return nil, wrap(err)
	}
	body, err := idList("roles", roleIDs, 0)
	if err != nil {
		return nil, wrap(err)
	}
	resp, err := c.send(ctx, http.MethodPost, c.memberURL(orgID, id, "/roles", nil), body, nil)
	return resp, wrapIf(err, wrap)
}

// memberURL is the URL of the member id of the organization orgID, with
// suffix and the query q.
func (c *Client) memberURL(orgID, id, suffix string, q url.Values) string {
	u := c.root + "/api/v2/organizations/" + url.PathEscape(orgID) + "/members/" + url.PathEscape(id) + suffix
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// idList validates ids (1 to max of them, max 0 for no bound, none empty)
// and returns the body {key: ids}.
func idList(key string, ids []string, max int) ([]byte, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no %s", ErrInvalidRequest, key)
	}
	if max > 0 && len(ids) > max {
		return nil, fmt.Errorf("%w: %d %s, at most %d allowed", ErrInvalidRequest, len(ids), key, max)
	}
	for _, id := range ids {
		if err := CheckID(id); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidRequest, key, err)
		}
	}
	return json.Marshal(map[string][]string{key: ids})
}

func wrapIf(err error, wrap func(error) error) error {
	if err == nil {
		return nil
	}
	return wrap(err)
}
