package main

import (
	"bufio"
	"fmt"
	"html/template"
	"time"

	"github.com/linkbatch/linkbatch/internal/pairing"
)

// Bounds of the plan report, so that its size does not grow with the
// export: it lists the first groups of each kind and counts the rest.
const (
	reportMaxGroups  = 500 // groups listed per section
	reportMaxMembers = 25  // users listed per group
	reportMaxUsers   = 500 // users with unverified emails listed
)

// planReport is what the HTML plan report shows. It is filled in the
// second pass and holds at most the bounds above.
type planReport struct {
	From, Out, Policy string
	MaxGroup          int
	Generated         string
	Elapsed           time.Duration
	Counts            pairing.Counts

	Users, BadLines                int
	Pairs, AlreadyLinked, Refused  int
	SetAsideUsers, UnverifiedUsers int

	Paired, NeedsHuman []*reportGroup
	MorePaired         int
	MoreNeedsHuman     int
	Unverified         []reportUser
	MoreUnverified     int
	RefusedPairs       []reportUser

	index map[string]*reportGroup
}

type reportGroup struct {
	Email, Primary, Reason string
	Size                   int
	Members                []reportUser
	MoreMembers            int
}

type reportUser struct {
	ID, Email, Note string
}

func newPlanReport(cfg *planConfig, c pairing.Counts) *planReport {
	return &planReport{
		From: cfg.From, Out: cfg.Out, Policy: cfg.Pairing.Policy.String(), MaxGroup: cfg.Pairing.MaxGroup,
		Generated: time.Now().UTC().Format(time.RFC3339), Counts: c,
		index: map[string]*reportGroup{},
	}
}

// add records the placement of one user.
func (r *planReport) add(u pairing.User, pl pairing.Placement) {
	note := ""
	switch pl.Action {
	case pairing.Nothing:
		return
	case pairing.UnverifiedEmail:
		if pl.State == pairing.NeedsHuman {
			r.SetAsideUsers++
			note = "email not verified"
			break
		}
		r.UnverifiedUsers++
		if len(r.Unverified) < reportMaxUsers {
			r.Unverified = append(r.Unverified, reportUser{ID: trimText(u.ID), Email: trimText(u.Email)})
		} else {
			r.MoreUnverified++
		}
		return
	case pairing.SetAside:
		r.SetAsideUsers++
	case pairing.Link:
		r.Pairs++
		note = "to be linked into the primary"
	case pairing.AlreadyLinked:
		r.AlreadyLinked++
		note = "already linked into the primary: skipped"
	case pairing.Primary:
		note = "primary"
	}
	r.member(pl, reportUser{ID: trimText(u.ID), Email: trimText(u.Email), Note: note})
}

// refuse records a pair that 'linkbatch run' would refuse.
func (r *planReport) refuse(u pairing.User, pl pairing.Placement, err error) {
	r.Refused++
	if len(r.RefusedPairs) < reportMaxUsers {
		r.RefusedPairs = append(r.RefusedPairs, reportUser{ID: trimText(u.ID), Email: trimText(pl.Primary), Note: trimText(err.Error())})
	}
	r.member(pl, reportUser{ID: trimText(u.ID), Email: trimText(u.Email), Note: "left out: " + trimText(err.Error())})
}

// member lists u in its group, if the group is listed.
func (r *planReport) member(pl pairing.Placement, u reportUser) {
	g, ok := r.index[pl.Email]
	if !ok {
		list, more := &r.Paired, &r.MorePaired
		if pl.State == pairing.NeedsHuman {
			list, more = &r.NeedsHuman, &r.MoreNeedsHuman
		}
		if len(*list) >= reportMaxGroups {
			*more++
			r.index[pl.Email] = nil // counted; not listed
			return
		}
		g = &reportGroup{Email: trimText(pl.Email), Size: pl.Size, Reason: pl.Reason}
		if pl.State == pairing.Paired {
			g.Primary = trimText(pl.Primary)
		}
		*list = append(*list, g)
		r.index[pl.Email] = g
	}
	if g == nil {
		return
	}
	if len(g.Members) < reportMaxMembers {
		g.Members = append(g.Members, u)
	} else {
		g.MoreMembers++
	}
}

// writePlanReport writes the report under a temporary name; the caller
// commits or aborts the file.
func writePlanReport(path string, r *planReport) (*atomicFile, error) {
	f, err := newAtomicFile(path)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriter(f)
	if err := planReportTemplate.Execute(bw, r); err != nil {
		f.Abort()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		f.Abort()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return f, nil
}

var planReportTemplate = template.Must(template.New("plan").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>linkbatch plan: {{.From}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.num{text-align:right}.warn{color:#a40}code{font-size:90%}
ul{margin:.2em 0;padding-left:1.2em}
</style></head><body>
<h1>linkbatch plan</h1>
<p>Export <code>{{.From}}</code>, pairs written to <code>{{.Out}}</code>, generated {{.Generated}} in {{.Elapsed}}.
Primary policy <code>{{.Policy}}</code>; groups of more than {{.MaxGroup}} users need a person.</p>
<h2>Summary</h2>
<table>
<tr><th>Users read</th><td class="num">{{.Users}}</td></tr>
<tr><th>Unreadable export lines</th><td class="num">{{.BadLines}}</td></tr>
<tr><th>Distinct emails</th><td class="num">{{.Counts.Emails}}</td></tr>
<tr><th>Users without email</th><td class="num">{{.Counts.NoEmail}}</td></tr>
<tr><th>Groups paired</th><td class="num">{{.Counts.Paired}}</td></tr>
<tr><th>Pairs written</th><td class="num">{{.Pairs}}</td></tr>
<tr><th>Users already linked into their primary (skipped)</th><td class="num">{{.AlreadyLinked}}</td></tr>
<tr><th>Groups that need a person</th><td class="num">{{.Counts.NeedsHuman}} ({{.SetAsideUsers}} users)</td></tr>
<tr><th>Users with unverified emails (never paired)</th><td class="num">{{.UnverifiedUsers}}</td></tr>
<tr><th>Pairs left out (linkbatch run would refuse them)</th><td class="num">{{.Refused}}</td></tr>
</table>

<h2>Groups that need a person</h2>
{{if .NeedsHuman}}<p>These users are not paired. Decide each group, then add its pairs to the input of <code>linkbatch run</code> yourself.</p>
<table><tr><th>Email</th><th>Size</th><th>Why</th><th>Users</th></tr>
{{range .NeedsHuman}}<tr><td>{{.Email}}</td><td class="num">{{.Size}}</td><td class="warn">{{.Reason}}</td><td><ul>{{range .Members}}<li><code>{{.ID}}</code>{{if .Note}} ({{.Note}}){{end}}</li>{{end}}{{if .MoreMembers}}<li>... and {{.MoreMembers}} more</li>{{end}}</ul></td></tr>
{{end}}</table>{{if .MoreNeedsHuman}}<p>... and {{.MoreNeedsHuman}} more groups.</p>{{end}}
{{else}}<p>None.</p>{{end}}

<h2>Users with unverified emails</h2>
{{if .Unverified}}<p>Linking on an unverified email lets whoever registered the address take over the account: these users are never paired.</p>
<table><tr><th>User</th><th>Email</th></tr>
{{range .Unverified}}<tr><td><code>{{.ID}}</code></td><td>{{.Email}}</td></tr>
{{end}}</table>{{if .MoreUnverified}}<p>... and {{.MoreUnverified}} more.</p>{{end}}
{{else}}<p>None outside the groups above.</p>{{end}}

{{if .RefusedPairs}}<h2>Pairs left out</h2>
<table><tr><th>Secondary</th><th>Primary</th><th>Why</th></tr>
{{range .RefusedPairs}}<tr><td><code>{{.ID}}</code></td><td><code>{{.Email}}</code></td><td class="warn">{{.Note}}</td></tr>
{{end}}</table>{{end}}

<h2>Groups paired</h2>
{{if .Paired}}<table><tr><th>Email</th><th>Size</th><th>Primary</th><th>Why</th><th>Users</th></tr>
{{range .Paired}}<tr><td>{{.Email}}</td><td class="num">{{.Size}}</td><td><code>{{.Primary}}</code></td><td>{{.Reason}}</td><td><ul>{{range .Members}}<li><code>{{.ID}}</code>{{if .Note}} ({{.Note}}){{end}}</li>{{end}}{{if .MoreMembers}}<li>... and {{.MoreMembers}} more</li>{{end}}</ul></td></tr>
{{end}}</table>{{if .MorePaired}}<p>... and {{.MorePaired}} more groups.</p>{{end}}
{{else}}<p>None.</p>{{end}}
</body></html>
`))
