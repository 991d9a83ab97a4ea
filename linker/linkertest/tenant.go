package linkertest

import (
	"crypto/rand"
	"maps"
	"slices"
	"strings"

	"github.com/linkbatch/linkbatch/linker"
)

// User is a user of the fake tenant. Identities[0] is the user's own
// identity; the others were linked into it, each carrying the profile of
// the account it came from in ProfileData.
type User struct {
	UserID        string
	Email         string
	EmailVerified bool
	Identities    []Identity
	// UserMetadata and AppMetadata are the user's metadata objects, nil
	// when the user has none; see metadata.go for how PATCH changes them.
	UserMetadata, AppMetadata map[string]any
	// Roles and Organizations are the ids of the roles the user holds and
	// of the organizations it is a member of; see roles.go.
	Roles, Organizations []string
	// Permissions are those assigned to the user directly; see
	// permissions.go.
	Permissions []Permission
	// OrganizationRoles are the ids of the roles the user holds within
	// each organization it is a member of, by organization id.
	OrganizationRoles map[string][]string
}

// Identity is one entry of a user's identities. The IdP tokens are sent in
// answers only when [Config.IdPTokens] is set.
type Identity struct {
	Provider    string
	UserID      string // without the provider prefix
	Connection  string
	IsSocial    bool
	ProfileData map[string]any

	AccessToken       string
	RefreshToken      string
	AccessTokenSecret string
}

// identKey identifies an identity tenant-wide.
type identKey struct{ provider, userID string }

func (id Identity) key() identKey { return identKey{id.Provider, id.UserID} }

// Connection naming by provider kind, as Auth0 names them by default.
var (
	enterprise = map[string]bool{
		"ad": true, "adfs": true, "auth0-oidc": true, "custom": true, "google-apps": true,
		"ip": true, "office365": true, "oidc": true, "okta": true, "pingfederate": true,
		"samlp": true, "sharepoint": true, "waad": true,
	}
	customSocial = map[string]bool{"oauth1": true, "oauth2": true}
	passwordless = map[string]bool{"email": true, "sms": true}
)

// identityOf derives the own identity of the user with the full id fullID,
// e.g. "samlp|acme|bob@acme.com" -> provider samlp, user_id acme|bob@acme.com,
// connection acme. ok is false when fullID is not a valid user id.
func identityOf(fullID string) (id Identity, ok bool) {
	provider, rest, err := linker.ParseUserID(fullID)
	if err != nil {
		return Identity{}, false
	}
	id = Identity{Provider: provider, UserID: rest, Connection: provider}
	switch {
	case provider == "auth0":
		id.Connection = "Username-Password-Authentication"
	case passwordless[provider]:
	case enterprise[provider] || customSocial[provider]:
		if conn, _, cut := strings.Cut(rest, "|"); cut && conn != "" {
			id.Connection = conn
		}
		id.IsSocial = customSocial[provider]
	default:
		id.IsSocial = true
	}
	return id, true
}

// emailOf makes a plausible email address from a full user id: the last
// '|'-separated part when it already is one, otherwise that part reduced
// to [a-z0-9._-] at example.com.
func emailOf(fullID string) string {
	last := fullID[strings.LastIndexByte(fullID, '|')+1:]
	if local, domain, ok := strings.Cut(last, "@"); ok && local != "" && strings.Contains(domain, ".") &&
		!strings.ContainsAny(last, " \t\"<>()[],;:\\") && !strings.Contains(domain, "@") {
		return strings.ToLower(last)
	}
	var b strings.Builder
	for _, r := range strings.ToLower(last) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	local := strings.Trim(b.String(), ".-")
	if local == "" {
		local = "user"
	}
	return local + "@example.com"
}

func idpSecret(kind string) string { return "idp-secret-" + kind + "-" + rand.Text() }

// Seed creates a standalone user for each full id, e.g. "auth0|64b0",
// "google-oauth2|1077" or "samlp|acme|bob@acme.com". The provider is the
// text before the first '|' and the identity's user_id the rest; the
// connection is "Username-Password-Authentication" for auth0, the segment
// after the provider for enterprise and custom oauth providers (samlp,
// waad, adfs, oidc, okta, oauth2, ...), and the provider name for social
// ones. Each user gets an email derived from its id, verified.
//
// Seed is idempotent: an id the tenant has ever known (standalone or linked
// into another user) is left alone, so seeding never resurrects a linked
// secondary. Ids that linker.ParseUserID rejects are skipped.
func (s *Server) Seed(fullIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, full := range fullIDs {
		if _, known := s.mainKey[full]; known {
			continue
		}
		id, ok := identityOf(full)
		if !ok {
			continue
		}
		if _, held := s.owner[id.key()]; held {
			continue
		}
		s.put(&User{UserID: full, Email: emailOf(full), EmailVerified: true, Identities: []Identity{id}})
	}
}

// AddUser adds a copy of u to the tenant, replacing any user with the same
// UserID. When u has no identities its own identity is derived from UserID
// as Seed does. Identities claimed by u are taken from any user holding
// them; keeping the tenant consistent is the caller's business. Missing IdP
// tokens are generated when [Config.IdPTokens] is set. AddUser panics if
// u.UserID is empty, or if u has no identities and UserID is not a valid
// full user id.
func (s *Server) AddUser(u User) {
	if u.UserID == "" {
		panic("linkertest: AddUser: empty UserID")
	}
	u = copyUser(u)
	if len(u.Identities) == 0 {
		id, ok := identityOf(u.UserID)
		if !ok {
			panic("linkertest: AddUser: no identities and an invalid user id")
		}
		u.Identities = []Identity{id}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.users[u.UserID]; ok {
		for _, id := range old.Identities {
			if s.owner[id.key()] == old.UserID {
				delete(s.owner, id.key())
			}
		}
	}
	s.put(&u)
}

// put stores u as a standalone user, giving its identities IdP tokens when
// answers carry them; s.mu must be held.
func (s *Server) put(u *User) {
	for i := range u.Identities {
		id := &u.Identities[i]
		s.owner[id.key()] = u.UserID
		if !s.idpTokens {
			continue
		}
		if id.AccessToken == "" {
			id.AccessToken = idpSecret("access")
		}
		if id.RefreshToken == "" {
			id.RefreshToken = idpSecret("refresh")
		}
		if id.AccessTokenSecret == "" {
			id.AccessTokenSecret = idpSecret("secret")
		}
	}
	s.users[u.UserID] = u
	s.mainKey[u.UserID] = u.Identities[0].key()
}

// User returns a copy of the standalone user with the given full id; ok is
// false for an unknown id and for a secondary that was linked away.
func (s *Server) User(id string) (u User, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.users[id]
	if !ok {
		return User{}, false
	}
	return copyUser(*p), true
}

// LinkedTo reports the id of the user the account secondaryFullID is now
// linked into; ok is false while that account is standalone or unknown.
func (s *Server) LinkedTo(secondaryFullID string) (primary string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, known := s.mainKey[secondaryFullID]
	if !known {
		return "", false
	}
	o, held := s.owner[k]
	if !held || o == secondaryFullID {
		return "", false
	}
	return o, true
}

func copyUser(u User) User {
	u.UserMetadata, u.AppMetadata = cloneObject(u.UserMetadata), cloneObject(u.AppMetadata)
	u.Identities = slices.Clone(u.Identities)
	u.Roles, u.Organizations = slices.Clone(u.Roles), slices.Clone(u.Organizations)
	u.Permissions = slices.Clone(u.Permissions)
	if u.OrganizationRoles != nil {
		roles := make(map[string][]string, len(u.OrganizationRoles))
		for org, ids := range u.OrganizationRoles {
			roles[org] = slices.Clone(ids)
		}
		u.OrganizationRoles = roles
	}
	for i := range u.Identities {
		u.Identities[i].ProfileData = maps.Clone(u.Identities[i].ProfileData)
	}
	return u
}

// linkOutcome is the result of a link attempt.
type linkOutcome int

const (
	linked linkOutcome = iota
	primaryMissing
	sameIdentity
	alreadyInPrimary
	secondaryMissing
	linkedElsewhere
)

// link links the account whose own identity is sec into the user primaryID
// and returns the primary's identities, as wire values, on success.
func (s *Server) link(primaryID string, sec identKey) (linkOutcome, []wireIdentity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.users[primaryID]
	if !ok {
		return primaryMissing, nil
	}
	if p.Identities[0].key() == sec {
		return sameIdentity, nil
	}
	if slices.ContainsFunc(p.Identities, func(id Identity) bool { return id.key() == sec }) {
		return alreadyInPrimary, nil
	}
	holder, held := s.owner[sec]
	if !held {
		return secondaryMissing, nil
	}
	sc := s.users[holder]
	if sc == nil || sc.Identities[0].key() != sec {
		return linkedElsewhere, nil
	}
	moved := slices.Clone(sc.Identities)
	profile := maps.Clone(moved[0].ProfileData)
	if profile == nil {
		profile = make(map[string]any, 2)
	}
	profile["email"], profile["email_verified"] = sc.Email, sc.EmailVerified
	moved[0].ProfileData = profile
	for _, id := range moved {
		s.owner[id.key()] = p.UserID
	}
	// A new slice: wire values and snapshots taken earlier keep the old one.
	p.Identities = slices.Concat(p.Identities, moved)
	delete(s.users, sc.UserID)
	return linked, s.wireIdentities(p.Identities)
}

// secondaryByID resolves the own identity of the user with the full id, for
// link_with; ok is false for an id the tenant never knew.
func (s *Server) secondaryByID(fullID string) (identKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.mainKey[fullID]
	return k, ok
}
