package export

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// csvColumns are the positions of the known columns of a CSV export; -1
// when absent.
type csvColumns struct {
	userID, email, verified, created, logins, connection int
	// identities[N].provider/user_id/connection by N.
	idents []identColumns
}

type identColumns struct{ provider, userID, connection int }

var identColumn = regexp.MustCompile(`^identities\[([0-9]{1,2})\]\.(provider|user_id|connection)$`)

// mapColumns finds the known columns of a CSV export's header. Names are
// matched trimmed, case-insensitively, with a leading quote guard removed;
// unknown columns are ignored. It returns an error when user_id is missing
// or a known column appears twice.
func mapColumns(header []string) (csvColumns, error) {
	c := csvColumns{userID: -1, email: -1, verified: -1, created: -1, logins: -1, connection: -1}
	seen := map[string]bool{}
	for i, raw := range header {
		name := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(raw), "'")))
		var slot *int
		switch name {
		case "user_id":
			slot = &c.userID
		case "email":
			slot = &c.email
		case "email_verified":
			slot = &c.verified
		case "created_at":
			slot = &c.created
		case "logins_count":
			slot = &c.logins
		case "connection":
			slot = &c.connection
		default:
			m := identColumn.FindStringSubmatch(name)
			if m == nil {
				continue
			}
			n, _ := strconv.Atoi(m[1]) // cannot fail: one or two digits
			for len(c.idents) <= n {
				c.idents = append(c.idents, identColumns{-1, -1, -1})
			}
			switch m[2] {
			case "provider":
				slot = &c.idents[n].provider
			case "user_id":
				slot = &c.idents[n].userID
			default:
				slot = &c.idents[n].connection
			}
		}
		if seen[name] {
			return csvColumns{}, fmt.Errorf("CSV header names the column %s twice", name)
		}
		seen[name] = true
		*slot = i
	}
	if c.userID < 0 {
		return csvColumns{}, errors.New("CSV header has no user_id column (is this a user export?)")
	}
	return c, nil
}

// unguard removes the quote that the export puts before every string.
func unguard(s string) string { return strings.TrimPrefix(s, "'") }

// nextCSV reads the next user of a CSV export.
func (r *Reader) nextCSV() (User, error) {
	rec, err := r.cr.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) && (errors.Is(pe.Err, csv.ErrQuote) || errors.Is(pe.Err, csv.ErrBareQuote)) {
			return User{}, &LineError{Line: pe.StartLine, Msg: pe.Err.Error()}
		}
		if errors.Is(err, io.EOF) {
			r.err = io.EOF
		} else {
			r.err = fmt.Errorf("read export: %w", err)
		}
		return User{}, r.err
	}
	line, _ := r.cr.FieldPos(0)
	return parseRecord(r.cols, rec, line)
}

// parseRecord turns one CSV record into a User.
func parseRecord(c csvColumns, rec []string, line int) (User, error) {
	get := func(i int) string {
		if i < 0 || i >= len(rec) {
			return ""
		}
		return unguard(rec[i])
	}
	bad := func(field, msg string) (User, error) {
		return User{}, &LineError{Line: line, Field: field, Msg: msg}
	}
	u := User{Line: line, UserID: get(c.userID), Email: get(c.email)}
	if u.UserID == "" {
		return bad("user_id", "missing")
	}
	if v := strings.TrimSpace(get(c.verified)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return bad("email_verified", fmt.Sprintf("%q is not true or false", shorten(v)))
		}
		u.EmailVerified = b
	}
	if v := strings.TrimSpace(get(c.created)); v != "" {
		t, err := parseTime(v)
		if err != nil {
			return bad("created_at", err.Error())
		}
		u.CreatedAt = t
	}
	if v := strings.TrimSpace(get(c.logins)); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return bad("logins_count", "want a non-negative integer")
		}
		u.LoginsCount = n
	}
	conn := get(c.connection)
	if len(c.idents) > 0 && c.idents[0].connection >= 0 {
		conn = get(c.idents[0].connection)
	}
	for n, ic := range c.idents {
		p, id := get(ic.provider), get(ic.userID)
		if p == "" && id == "" {
			if n == 0 {
				// No own identity columns: derive it from user_id.
				u.Identities = ownIdentity(u.UserID, conn)
			}
			continue // else this user has fewer identities
		}
		if p == "" || id == "" {
			return bad(fmt.Sprintf("identities[%d]", n), "needs a provider and a user_id")
		}
		u.Identities = append(u.Identities, Identity{Provider: p, UserID: id, Connection: get(ic.connection)})
	}
	if len(c.idents) == 0 {
		u.Identities = ownIdentity(u.UserID, conn)
	}
	return u, nil
}
