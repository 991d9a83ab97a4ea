package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/linkbatch/linkbatch/linker"
	"github.com/linkbatch/linkbatch/ratelimit"
)

// settle returns the result of a row that needs no request: a row the plan
// holds back (invalid, a conflict, a duplicate), a row that could not be
// read (the plan saw every one; this is a safety net), or a row of a dry
// run that reads nothing.
func (r *Runner) settle(plan *Plan, row Row) (Result, bool) {
	res := Result{Line: row.Line, Primary: row.Primary, Secondary: row.Secondary, SecondaryProvider: row.SecondaryProvider}
	switch v, held := plan.Verdict(row.Line); {
	case held:
		res.Status, res.Error = v.Status, v.Err
	case row.Err != nil:
		res.Status, res.Error = StatusInvalid, row.Err.Error()
	case r.Config.DryRun && !r.Config.ReadsUsers():
		res.Status = StatusPlanned
	default:
		return Result{}, false
	}
	return res, true
}

// process handles one valid row: reads the users first when asked to, then
// links. It returns the row's result and whether to write it (a row cut
// short by cancellation or refused credentials has no result), and a fatal
// error that must stop the run.
func (r *Runner) process(ctx context.Context, row Row) (Result, bool, error) {
	start := time.Now()
	res := Result{Line: row.Line, Primary: row.Primary, Secondary: row.Secondary, SecondaryProvider: row.SecondaryProvider}
	var keep bool
	var fatal error
	if r.Action != nil {
		res, keep, fatal = r.Action(ctx, r, row, res)
	} else {
		res, keep, fatal = r.processRow(ctx, row, res)
	}
	res.Duration = time.Since(start)
	return res, keep, fatal
}

// processRow handles one checked row: it reads the users when the run
// needs them, backs them up and merges their metadata when asked to, then
// links. Its results are as for process.
func (r *Runner) processRow(ctx context.Context, row Row, res Result) (Result, bool, error) {
	req, err := row.Request() // carried by a checked row: not validated again
	if err != nil {
		res.Status, res.Error = StatusInvalid, err.Error()
		return res, true, nil
	}
	if r.Config.Merges() && req.LinkWith != "" && (r.Config.ReadsUsers() || !r.Config.DryRun) {
		res.Status, res.Error = StatusInvalid, "link_with: the secondary's metadata cannot be read from its token; --merge-metadata refuses such rows"
		return res, true, nil
	}
	var users pair
	if r.Config.ReadsUsers() || r.writesUsers() {
		var done, keep bool
		var fatal error
		users, done, keep, fatal = r.inspect(ctx, req, &res)
		if done || !keep || fatal != nil {
			return res, keep, fatal
		}
	}
	if r.Backup != nil && !r.Config.DryRun && req.LinkWith == "" {
		var done, keep bool
		var fatal error
		if users.grants, done, keep, fatal = r.readGrants(ctx, req.Provider+"|"+req.UserID, &res); done || !keep || fatal != nil {
			return res, keep, fatal
		}
	}
	if r.Config.DryRun {
		res.Status = StatusPlanned
		if r.Config.Merges() && users.primary != nil && res.Error == "" {
			res.Error = planMerge(r.Config.Merge, users.primary, users.secondary).note(r.Config.Merge)
		}
		return res, true, nil
	}
	if done, keep, fatal := r.beforeLink(ctx, req, row.Line, users, &res); done || !keep || fatal != nil {
		return res, keep, fatal
	}
	return r.link(ctx, req, res)
}

// beforeLink does what must be done before a row's link is sent: the
// backup of both users, then the metadata merge. done, keep and fatal are
// as for inspect.
func (r *Runner) beforeLink(ctx context.Context, req linker.LinkRequest, line int, users pair, res *Result) (done, keep bool, fatal error) {
	if r.Backup != nil {
		if err := r.backup(req, line, users); err != nil {
			return true, false, err
		}
	}
	if r.Config.Merges() {
		return r.merge(ctx, req, users, res)
	}
	return false, true, nil
}

// link sends the row's link and settles its result from the answer.
func (r *Runner) link(ctx context.Context, req linker.LinkRequest, res Result) (Result, bool, error) {
	resp, err := r.call(ctx, "link", &res, func(ctx context.Context) (*linker.Response, error) {
		_, resp, err := r.Client.Link(ctx, req)
		return resp, err
	})
	switch {
	case err == nil && resp != nil && !resp.Created() && req.LinkWith == "":
		return r.checkOddSuccess(ctx, req, resp, res)
	case err == nil:
		return linked(resp, res), true, nil
	case ctx.Err() != nil:
		return res, false, nil
	case linker.IsAuth(err):
		return res, false, fmt.Errorf("%w: %w", ErrCredentials, err)
	case linker.IsMaybeAlreadyLinked(err) && req.LinkWith == "":
		return r.checkAmbiguous(ctx, req, err, res)
	}
	fail(&res, err)
	return res, true, nil
}

// linked settles a row whose link was answered with a 2xx status line: the
// link happened, whatever the answer's body; an unusable body or a status
// other than 201 is noted.
func linked(resp *linker.Response, res Result) Result {
	res.Status = StatusLinked
	switch {
	case resp != nil && resp.BodyErr != nil:
		res.Error = "note: linked, but the answer's body was unusable: " + resp.BodyErr.Error()
	case resp != nil && !resp.Created():
		res.Error = fmt.Sprintf("note: the link was answered %d, not 201", resp.StatusCode)
	}
	return res
}

// checkOddSuccess settles a link answered with a 2xx that the API does not
// document for a link: it reads the primary to see whether the link
// happened.
func (r *Runner) checkOddSuccess(ctx context.Context, req linker.LinkRequest, resp *linker.Response, res Result) (Result, bool, error) {
	linked, verr := r.verify(ctx, req, &res)
	switch {
	case ctx.Err() != nil:
		return res, false, nil
	case linker.IsAuth(verr):
		return res, false, fmt.Errorf("%w: %w", ErrCredentials, verr)
	case verr != nil:
		res.Status, res.Retryable = StatusFailed, !errors.Is(verr, errNoReadScope)
		res.Error = fmt.Sprintf("the link was answered %d, not 201; %v", resp.StatusCode, verr)
	case linked:
		res.Status = StatusLinked
		res.Error = fmt.Sprintf("note: the link was answered %d, not 201; reading the primary shows the link", resp.StatusCode)
	default:
		res.Status = StatusFailed
		res.Error = fmt.Sprintf("the link was answered %d, not 201, but the primary does not hold the secondary identity", resp.StatusCode)
	}
	return res, true, nil
}

// checkAmbiguous settles a link refused in a way that may mean the pair is
// linked already (an earlier attempt whose answer was lost): it reads the
// primary to tell.
func (r *Runner) checkAmbiguous(ctx context.Context, req linker.LinkRequest, err error, res Result) (Result, bool, error) {
	linked, verr := r.verify(ctx, req, &res)
	switch {
	case ctx.Err() != nil:
		return res, false, nil
	case linker.IsAuth(verr):
		return res, false, fmt.Errorf("%w: %w", ErrCredentials, verr)
	case verr != nil:
		// The outcome is unknown: the link may have happened. A resume
		// checks again, unless the token cannot read users at all.
		fail(&res, err)
		res.Error += "; " + verr.Error()
		res.Retryable = !errors.Is(verr, errNoReadScope)
	case linked:
		res.Status = StatusAlreadyLinked
		res.ErrorCode, res.Error = "", ""
	default:
		fail(&res, err)
	}
	return res, true, nil
}

// fail fills res for a row the API refused or that ran out of retries.
func fail(res *Result, err error) {
	res.Status = StatusFailed
	var ae *linker.APIError
	if errors.As(err, &ae) {
		res.HTTPStatus = ae.Status
		res.ErrorCode = ae.Code
		res.Error = ae.Error()
	} else {
		res.Error = err.Error()
	}
	res.Retryable = errors.Is(err, ratelimit.ErrRetriesExhausted) || ae == nil
	if res.fatal = linker.FatalForAll(err); res.fatal != "" {
		// The cause is the tenant's address or the token, not the row: once
		// it is fixed, a resumed run tries the row again.
		res.Retryable = true
	}
}

// errNoReadScope explains an ambiguous answer that could not be checked.
var errNoReadScope = errors.New("could not check whether the pair is already linked: the token lacks read:users (grant it to tell already-linked pairs apart)")

// verify reads the primary and reports whether the secondary identity is
// among its identities: the answer to an ambiguous 400/409 (the pair may have
// been linked by an earlier attempt whose answer was lost).
func (r *Runner) verify(ctx context.Context, req linker.LinkRequest, res *Result) (bool, error) {
	user, err := r.getUser(ctx, req.PrimaryID, res)
	if err != nil {
		if linker.IsForbidden(err) {
			r.readScopeOnce.Do(func() {
				if r.Log != nil {
					r.Log.Warn("cannot verify ambiguous answers: the token lacks the read:users scope; such rows are reported failed")
				}
			})
			return false, errNoReadScope
		}
		return false, fmt.Errorf("verify link: %w", err)
	}
	return linker.Has(user.Identities, req.Provider, req.UserID), nil
}

// pair is what inspect read of a row's users: nil profiles (and documents)
// when not read, and when.
type pair struct {
	primary, secondary       *linker.Profile
	primaryDoc, secondaryDoc json.RawMessage // whole, for a backup
	grants                   grants          // the secondary's, for a backup
	readAt                   time.Time
}

// inspect reads both users of a row before it is linked (--verify,
// --require-verified-email, a backup or a merge). It reports done when the
// row's result is settled without a link: the pair is already linked, a
// user does not exist, or the emails fail --require-verified-email. keep
// and fatal are as for process.
func (r *Runner) inspect(ctx context.Context, req linker.LinkRequest, res *Result) (users pair, done, keep bool, fatal error) {
	// settle settles the row; answered keeps the status of the read that
	// settled it in res.HTTPStatus, otherwise it is cleared.
	settle := func(status Status, msg string, answered bool) (pair, bool, bool, error) {
		res.Status, res.Error = status, msg
		if !answered {
			res.HTTPStatus = 0
		}
		return users, true, true, nil
	}
	check := func(err error, field string) (pair, bool, bool, error) {
		switch {
		case ctx.Err() != nil:
			return users, true, false, nil
		case linker.IsAuth(err):
			return users, true, false, fmt.Errorf("%w: %w", ErrCredentials, err)
		case linker.IsNotFound(err):
			return settle(StatusInvalid, field+": no such user in the tenant", true)
		}
		fail(res, err)
		return users, true, true, nil
	}
	users.readAt = r.now()
	primary, doc, err := r.readUser(ctx, req.PrimaryID, res)
	if err != nil {
		return check(err, "primary_user_id")
	}
	users.primary, users.primaryDoc = primary, doc
	if req.LinkWith == "" && linker.Has(primary.Identities, req.Provider, req.UserID) {
		return settle(StatusAlreadyLinked, "", true)
	}
	if req.LinkWith != "" {
		if r.Config.RequireVerifiedEmail {
			return settle(StatusInvalid, "link_with: the secondary's email cannot be read from its token; --require-verified-email refuses such rows", false)
		}
		return users, false, true, nil
	}
	secondary, doc, err := r.readUser(ctx, req.Provider+"|"+req.UserID, res)
	if err != nil {
		if linker.IsNotFound(err) {
			return settle(StatusInvalid, "secondary_user_id: no such user in the tenant (it may be linked into another account already)", true)
		}
		return check(err, "secondary_user_id")
	}
	users.secondary, users.secondaryDoc = secondary, doc
	res.Warning = emailWarning(&primary.User, &secondary.User)
	if res.Warning != "" {
		res.PrimaryEmail, res.SecondaryEmail = primary.Email, secondary.Email
	}
	if r.Config.RequireVerifiedEmail && res.Warning != "" {
		msg := "refused by --require-verified-email: the two users' emails differ"
		if res.Warning == WarnEmailUnverified {
			msg = "refused by --require-verified-email: an email is not verified"
		}
		return settle(StatusInvalid, msg, false)
	}
	return users, false, true, nil
}

// emailWarning compares two users' emails: linking accounts whose emails
// differ, or on an email nobody verified, risks an account takeover.
func emailWarning(a, b *linker.User) string {
	switch {
	case a.Email == "" || b.Email == "" || !strings.EqualFold(a.Email, b.Email):
		return WarnEmailMismatch
	case !a.EmailVerified || !b.EmailVerified:
		return WarnEmailUnverified
	}
	return ""
}

// getUser reads a user through the pacer, adding its requests to res.
func (r *Runner) getUser(ctx context.Context, id string, res *Result) (*linker.User, error) {
	var user *linker.User
	_, err := r.call(ctx, "get_user", res, func(ctx context.Context) (*linker.Response, error) {
		u, resp, err := r.Client.GetUser(ctx, id, "user_id", "email", "email_verified", "identities")
		user = u
		return resp, err
	})
	return user, err
}

// readUser reads a user for inspect: whole, with its metadata, when the
// run backs users up or merges their metadata (or a dry run shows the
// merge); otherwise only the fields inspect needs. doc is nil then.
func (r *Runner) readUser(ctx context.Context, id string, res *Result) (*linker.Profile, json.RawMessage, error) {
	if r.Backup == nil && !r.Config.Merges() {
		u, err := r.getUser(ctx, id, res)
		if err != nil {
			return nil, nil, err
		}
		return &linker.Profile{User: *u}, nil, nil
	}
	return r.getDocument(ctx, id, res)
}

// getDocument reads a whole user through the pacer, adding its requests to
// res.
func (r *Runner) getDocument(ctx context.Context, id string, res *Result) (*linker.Profile, json.RawMessage, error) {
	var p *linker.Profile
	var doc json.RawMessage
	_, err := r.call(ctx, "get_user", res, func(ctx context.Context) (*linker.Response, error) {
		u, d, resp, err := r.Client.GetUserDocument(ctx, id)
		p, doc = u, d
		return resp, err
	})
	return p, doc, err
}
