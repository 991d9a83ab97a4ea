// Package pairing groups users by verified email and chooses, in each group,
// the primary account that the group's other users are to be linked into.
//
// It owns the grouping rules (lower-cased, trimmed email; verified emails
// only), the primary policies, and the rules that set a group aside for a
// person to decide. It is fed users one at a time, twice: [Planner.Add] in a
// first pass keeps a few facts per email, [Planner.Decide] settles each
// group, and [Planner.Place] in a second pass over the same users says what
// to do with each. Its memory grows with the number of distinct emails, not
// of users. It knows nothing of file formats, of the Management API, or of
// how pairs are linked.
package pairing

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// PolicyKind is how a group's primary is chosen.
type PolicyKind int

// Policies.
const (
	// Oldest chooses the user created first (created_at); ties go to the
	// smallest user_id.
	Oldest PolicyKind = iota + 1
	// MostLogins chooses the user with the most logins (logins_count);
	// ties go to the smallest user_id.
	MostLogins
	// Connection chooses the one user of the group on a named connection;
	// a group with none or several such users needs a person.
	Connection
)

// Policy is a primary policy, as given to --primary.
type Policy struct {
	Kind       PolicyKind
	Connection string // for Connection
}

// String returns the policy as ParsePolicy reads it.
func (p Policy) String() string {
	switch p.Kind {
	case Oldest:
		return "oldest"
	case MostLogins:
		return "most-logins"
	case Connection:
		return "connection=" + p.Connection
	}
	return "unknown"
}

// ParsePolicy reads "oldest", "most-logins" or "connection=NAME".
func ParsePolicy(s string) (Policy, error) {
	switch s = strings.TrimSpace(s); {
	case s == "oldest":
		return Policy{Kind: Oldest}, nil
	case s == "most-logins":
		return Policy{Kind: MostLogins}, nil
	case strings.HasPrefix(s, "connection="):
		name := strings.TrimSpace(strings.TrimPrefix(s, "connection="))
		if name == "" {
			return Policy{}, errors.New("connection= needs a connection name")
		}
		return Policy{Kind: Connection, Connection: name}, nil
	}
	return Policy{}, fmt.Errorf("want oldest, most-logins or connection=NAME, not %q", s)
}

// Config is the settings of a Planner.
type Config struct {
	Policy Policy
	// MaxGroup is the largest group that is paired without a person
	// looking at it.
	MaxGroup int
	// CheckID, when set, rejects a user id that cannot be written into a
	// pair; a group holding such a user needs a person.
	CheckID func(id string) error
}

// DefaultMaxGroup is the default of Config.MaxGroup.
const DefaultMaxGroup = 10

// DefaultConfig returns the oldest policy and DefaultMaxGroup.
func DefaultConfig() Config {
	return Config{Policy: Policy{Kind: Oldest}, MaxGroup: DefaultMaxGroup}
}

// Validate checks c.
func (c Config) Validate() error {
	switch c.Policy.Kind {
	case Oldest, MostLogins:
	case Connection:
		if c.Policy.Connection == "" {
			return errors.New("primary policy connection= needs a connection name")
		}
	default:
		return errors.New("no primary policy")
	}
	if c.MaxGroup < 2 {
		return fmt.Errorf("max group must be at least 2, not %d", c.MaxGroup)
	}
	return nil
}

// User is what the planner needs to know of a user.
type User struct {
	ID            string
	Email         string
	EmailVerified bool
	CreatedAt     time.Time // zero when unknown
	Logins        int64
	Connection    string // of the user's own identity
	// Identities are the full ids ("provider|user_id") of the user's
	// identities, its own first; more than one means the user is already
	// the primary of linked accounts. Empty means one identity, whose full
	// id is ID.
	Identities []string
}

// ownID returns the full id of the user's own identity.
func (u User) ownID() string {
	if len(u.Identities) > 0 {
		return u.Identities[0]
	}
	return u.ID
}

// Key returns the grouping key of an email: trimmed and lower-cased.
func Key(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// candidate is the best primary of a group so far.
type candidate struct {
	id      string
	created int64 // Unix nanoseconds
	logins  int64
}

// group is what the planner keeps per email.
type group struct {
	users, unverified int32
	existing          int32 // users already holding linked identities
	onConnection      int32 // users on the policy's connection
	noCreated         bool
	badID             string // a user id CheckID refused
	best              candidate
	existingID        string
	linked            []string // identities of the existing primary
	// Set by Decide.
	state   State
	primary string
	reason  string
}

// State is what became of a group.
type State int

// Group states.
const (
	Single     State = iota + 1 // one user: nothing to link
	Paired                      // the others are linked into the primary
	Unverified                  // no user has a verified email: never paired
	NeedsHuman                  // set aside: see the reason
)

// String names the state.
func (s State) String() string {
	switch s {
	case Single:
		return "single"
	case Paired:
		return "paired"
	case Unverified:
		return "unverified"
	case NeedsHuman:
		return "needs a person"
	}
	return "unknown"
}

// Planner groups users and plans their pairs. A Planner is not safe for
// concurrent use.
type Planner struct {
	cfg     Config
	groups  map[string]*group
	noEmail int
	decided bool
}

// NewPlanner returns a planner for cfg, which must be valid.
func NewPlanner(cfg Config) *Planner {
	return &Planner{cfg: cfg, groups: make(map[string]*group)}
}

// Add takes in a user in the first pass. A user without an email is
// counted and otherwise ignored. Add panics after Decide.
func (p *Planner) Add(u User) {
	if p.decided {
		panic("pairing: Add after Decide")
	}
	k := Key(u.Email)
	if k == "" {
		p.noEmail++
		return
	}
	g := p.groups[k]
	if g == nil {
		g = &group{}
		p.groups[strings.Clone(k)] = g
	}
	g.users++
	if !u.EmailVerified {
		g.unverified++
		return // never a primary; its presence is all that counts
	}
	if g.badID == "" && p.cfg.CheckID != nil {
		if err := p.cfg.CheckID(u.ID); err != nil {
			g.badID = fmt.Sprintf("the user id %s cannot be sent: %v", strconv.Quote(shorten(u.ID)), err)
		}
	}
	if len(u.Identities) > 1 {
		g.existing++
		if g.existing == 1 {
			g.existingID = u.ID
			g.linked = append([]string(nil), u.Identities[1:]...)
		} else {
			g.linked = nil
		}
	}
	if p.cfg.Policy.Kind == Connection && u.Connection == p.cfg.Policy.Connection {
		g.onConnection++
	}
	c := candidate{id: u.ID, logins: u.Logins}
	if u.CreatedAt.IsZero() {
		g.noCreated = true
	} else {
		c.created = u.CreatedAt.UnixNano()
	}
	if g.users-g.unverified == 1 || p.better(c, u, g.best) {
		g.best = c
	}
}

// better reports whether the candidate c (of user u) beats best under the
// policy.
func (p *Planner) better(c candidate, u User, best candidate) bool {
	switch p.cfg.Policy.Kind {
	case Oldest:
		if c.created != best.created {
			return c.created < best.created
		}
	case MostLogins:
		if c.logins != best.logins {
			return c.logins > best.logins
		}
	case Connection:
		if u.Connection != p.cfg.Policy.Connection {
			return false
		}
		// Only one user of the group may be on the connection; with
		// several the group needs a person, whoever is kept here.
		return true
	}
	return c.id < best.id
}

// Decide settles every group after the first pass. It is idempotent.
func (p *Planner) Decide() {
	if p.decided {
		return
	}
	p.decided = true
	for _, g := range p.groups {
		p.decide(g)
	}
}

func (p *Planner) decide(g *group) {
	verified := g.users - g.unverified
	g.state = NeedsHuman
	switch {
	case g.users == 1:
		g.state, g.primary = Single, g.best.id
		return
	case verified == 0:
		g.state = Unverified
		g.reason = "no user of the group has a verified email: linking on an unverified email risks an account takeover"
		return
	case g.unverified > 0:
		g.reason = fmt.Sprintf("mixed: %d verified and %d unverified emails", verified, g.unverified)
		return
	case int(g.users) > p.cfg.MaxGroup:
		g.reason = fmt.Sprintf("%d users, more than the limit of %d", g.users, p.cfg.MaxGroup)
		return
	case g.badID != "":
		g.reason = g.badID
		return
	case g.existing > 1:
		g.reason = fmt.Sprintf("%d users already hold linked identities: which one stays primary is a person's choice", g.existing)
		return
	}
	pol := p.cfg.Policy
	if g.existing == 1 {
		if pol.Kind == Connection && g.onConnection != 1 {
			g.reason = fmt.Sprintf("%s already holds linked identities, and %d users are on connection %s", g.existingID, g.onConnection, pol.Connection)
			return
		}
		if pol.Kind == Connection && g.best.id != g.existingID {
			g.reason = fmt.Sprintf("conflict: %s already holds linked identities, but %s is the user on connection %s", g.existingID, g.best.id, pol.Connection)
			return
		}
		g.state, g.primary = Paired, g.existingID
		g.reason = fmt.Sprintf("already the primary of %d linked identities (kept whatever the policy)", len(g.linked))
		return
	}
	switch pol.Kind {
	case Oldest:
		if g.noCreated {
			g.reason = "a user has no created_at, so the oldest cannot be told"
			return
		}
		g.reason = "oldest: created " + time.Unix(0, g.best.created).UTC().Format(time.RFC3339)
	case MostLogins:
		g.reason = fmt.Sprintf("most logins: %d", g.best.logins)
	case Connection:
		if g.onConnection != 1 {
			g.reason = fmt.Sprintf("%d users on connection %s (want exactly one)", g.onConnection, pol.Connection)
			return
		}
		g.reason = "the one user on connection " + pol.Connection
	}
	g.state, g.primary = Paired, g.best.id
}

// Action is what to do with one user in the second pass.
type Action int

// Actions of Place.
const (
	Nothing         Action = iota + 1 // alone in its group, or no email
	Primary                           // the group's primary: others are linked into it
	Link                              // link this user into Placement.Primary
	AlreadyLinked                     // already an identity of the primary
	SetAside                          // its group needs a person
	UnverifiedEmail                   // its email is not verified: never paired
)

// Placement is the plan for one user.
type Placement struct {
	Action  Action
	Email   string // the grouping key
	Primary string // for Link, Primary and AlreadyLinked
	Size    int    // users in the group
	State   State
	Reason  string // why the primary was chosen, or why the group is set aside
}

// Place says what to do with u, in the second pass over the users given to
// Add. It calls Decide first if needed.
func (p *Planner) Place(u User) Placement {
	p.Decide()
	k := Key(u.Email)
	g := p.groups[k]
	if k == "" || g == nil {
		return Placement{Action: Nothing}
	}
	pl := Placement{Email: k, Size: int(g.users), State: g.state, Reason: g.reason, Primary: g.primary}
	switch g.state {
	case Single:
		pl.Action = Nothing
	case Unverified:
		pl.Action = UnverifiedEmail
	case NeedsHuman:
		pl.Action = SetAside
		if !u.EmailVerified {
			pl.Action = UnverifiedEmail
		}
	case Paired:
		switch {
		case u.ID == g.primary:
			pl.Action = Primary
		case len(g.linked) > 0 && contains(g.linked, u.ownID()):
			pl.Action = AlreadyLinked
		default:
			pl.Action = Link
		}
	}
	return pl
}

// Counts summarizes the groups after Decide.
type Counts struct {
	Emails     int // distinct emails
	NoEmail    int // users without an email
	Single     int // groups of one
	Paired     int // groups paired
	Unverified int // groups whose users all have unverified emails
	NeedsHuman int // groups set aside
}

// Counts returns the numbers of groups by state. It calls Decide first if
// needed.
func (p *Planner) Counts() Counts {
	p.Decide()
	c := Counts{Emails: len(p.groups), NoEmail: p.noEmail}
	for _, g := range p.groups {
		switch g.state {
		case Single:
			c.Single++
		case Paired:
			c.Paired++
		case Unverified:
			c.Unverified++
		case NeedsHuman:
			c.NeedsHuman++
		}
	}
	return c
}

func contains(ids []string, id string) bool {
	for _, s := range ids {
		if s == id {
			return true
		}
	}
	return false
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
