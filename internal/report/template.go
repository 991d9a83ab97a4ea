package report

import "html/template"

// reportTemplate renders the page model; everything it prints is escaped
// by html/template.
var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{"n": thousands}).Parse(reportHTML))

const reportHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}}</title>
<style>
:root { --fg:#1d2330; --muted:#5b6475; --line:#dfe3ea; --bg:#f6f7f9; --card:#fff;
  --linked:#1f8a4c; --planned:#2f6fd6; --already:#1a9aa0; --skipped:#8a93a3; --invalid:#c9372c; --failed:#8e1b3a;
  --unverified:#d9480f; --mismatch:#e6a100; --other:#6d5bd0; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1120px; margin:0 auto; padding:28px 32px 48px; }
h1 { font-size:26px; margin:0 0 6px; }
h2 { font-size:19px; margin:34px 0 12px; padding-bottom:6px; border-bottom:2px solid var(--line); }
h3 { font-size:16px; margin:0; display:flex; gap:10px; align-items:baseline; flex-wrap:wrap; }
code, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace; font-size:13px; }
.meta { color:var(--muted); margin:0; }
.meta b { color:var(--fg); font-weight:600; }
.banner { margin:18px 0 8px; padding:12px 16px; border-radius:8px; border-left:6px solid; background:var(--card); }
.banner p { margin:4px 0; }
.banner.ok { border-color:var(--linked); } .banner.warn { border-color:var(--mismatch); } .banner.bad { border-color:var(--invalid); }
.cards { display:flex; flex-wrap:wrap; gap:10px; margin:16px 0; }
.card { background:var(--card); border:1px solid var(--line); border-top:4px solid var(--skipped); border-radius:8px; padding:8px 14px; min-width:120px; color:inherit; text-decoration:none; }
a.card:hover { border-color:var(--fg); }
.card .n { display:block; font-size:24px; font-weight:700; font-variant-numeric:tabular-nums; }
.card .l { color:var(--muted); font-size:13px; }
.c-rows { border-top-color:var(--fg); } .c-linked { border-top-color:var(--linked); } .c-planned { border-top-color:var(--planned); }
.c-already_linked { border-top-color:var(--already); } .c-skipped { border-top-color:var(--skipped); } .c-invalid { border-top-color:var(--invalid); }
.c-failed { border-top-color:var(--failed); } .c-other, .c-w-other { border-top-color:var(--other); }
.c-w-unverified { border-top-color:var(--unverified); } .c-w-mismatch { border-top-color:var(--mismatch); }
.chart { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 16px; }
.bar { display:grid; grid-template-columns:150px 1fr 170px; gap:12px; align-items:center; margin:5px 0; }
.bar .track { background:#eceff3; border-radius:4px; height:18px; overflow:hidden; }
.bar .fill { height:100%; border-radius:4px; }
.bar .v { font-variant-numeric:tabular-nums; text-align:right; color:var(--muted); white-space:nowrap; }
.bar .v b { color:var(--fg); }
.chart hr { border:0; border-top:1px dashed var(--line); margin:10px 0; }
.s-linked { background:var(--linked); } .s-planned { background:var(--planned); } .s-already_linked { background:var(--already); }
.s-skipped { background:var(--skipped); } .s-invalid { background:var(--invalid); } .s-failed { background:var(--failed); } .s-other { background:var(--other); }
.w-unverified { background:var(--unverified); } .w-mismatch { background:var(--mismatch); } .w-other { background:var(--other); }
.kind { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 16px; margin:12px 0; }
.tag { display:inline-block; color:#fff; border-radius:4px; padding:1px 8px; font-size:12px; font-weight:600; letter-spacing:.02em; }
.count { color:var(--muted); font-weight:400; }
.explain p { margin:8px 0; max-width:86ch; }
table { border-collapse:collapse; width:100%; margin-top:10px; font-size:13px; table-layout:fixed; }
col.c-line { width:64px; } col.c-id { width:29%; } col.c-status { width:120px; }
table.index { table-layout:auto; background:var(--card); border:1px solid var(--line); border-radius:8px; margin:0 0 6px; }
table.index td.n { text-align:right; font-variant-numeric:tabular-nums; width:90px; }
table.index a { color:inherit; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; background:#fafbfc; }
td.line { text-align:right; font-variant-numeric:tabular-nums; width:56px; }
td.id { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace; word-break:break-all; }
.more { color:var(--muted); font-size:13px; margin:8px 0 0; }
.none { color:var(--muted); }
dl.run { display:grid; grid-template-columns:repeat(auto-fill, minmax(200px, 1fr)); gap:10px 18px; background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 16px; margin:0; }
dl.run div { display:flex; flex-direction:column; } dl.run dt { color:var(--muted); font-size:13px; } dl.run dd { margin:0; font-weight:600; font-variant-numeric:tabular-nums; }
dl.audit { margin:14px 0 0; grid-template-columns:repeat(auto-fill, minmax(260px, 1fr)); } dl.audit dd { font-weight:500; word-break:break-all; }
details.page summary { cursor:pointer; font-weight:600; }
footer { color:var(--muted); font-size:13px; margin-top:36px; }
@media print { body { background:#fff; } .kind, .chart, .card { break-inside:avoid; } }
</style>
</head>
<body>
<main>
<h1>{{.Heading}}</h1>
<p class="meta">{{if .Input}}Input <b class="mono">{{.Input}}</b> · {{end}}{{if .Results}}results <b class="mono">{{.Results}}</b> · {{end}}{{if .Generated}}generated <b>{{.Generated}}</b>{{end}}</p>
<p class="meta">{{.Mode}}</p>
{{if .Audit}}<dl class="run audit" id="audit">{{range .Audit}}<div><dt>{{.Label}}</dt><dd class="mono">{{.Value}}</dd></div>{{end}}</dl>
{{end}}
<section class="banner {{.Tone}}" aria-label="summary">
{{range .Attention}}<p>{{.}}</p>
{{end}}</section>

<h2>Totals</h2>
<div class="cards" id="totals">
{{range .Cards}}{{if .Anchor}}<a class="card {{.Class}}" href="#{{.Anchor}}">{{else}}<div class="card {{.Class}}">{{end}}<span class="n" data-total="{{.Label}}">{{n .Count}}</span><span class="l">{{.Label}}</span>{{if .Anchor}}</a>{{else}}</div>{{end}}
{{end}}</div>

<h2>Status breakdown</h2>
<div class="chart">
{{range .Bars}}<div class="bar"><span>{{.Label}}</span><div class="track"><div class="fill {{.Class}}" style="width: {{.Width}}%"></div></div><span class="v"><b>{{n .Count}}</b> · {{.Pct}}%</span></div>
{{else}}<p class="none">The results file has no rows.</p>
{{end}}{{if .WarningBars}}<hr>
{{range .WarningBars}}<div class="bar"><span>{{.Label}}</span><div class="track"><div class="fill {{.Class}}" style="width: {{.Width}}%"></div></div><span class="v"><b>{{n .Count}}</b> · {{.Pct}}%</span></div>
{{end}}{{end}}</div>

<h2>Email warnings</h2>
{{if not .Verified}}<p class="none">The users were not read, so the emails were not compared. Run with --verify to see these warnings.</p>
{{end}}{{range .Warnings}}<div class="kind" id="{{.ID}}">
<h3><span class="tag {{.Class}}">{{.Title}}</span> <span class="count">{{n .Count}} {{if eq .Count 1}}pair{{else}}pairs{{end}}</span></h3>
{{if .Explain}}<div class="explain">{{range .Explain}}<p>{{.}}</p>{{end}}</div>{{end}}
{{template "rows" .}}</div>
{{end}}{{if .Verified}}<p class="more">Auth0 on linking accounts safely: <a href="https://auth0.com/docs/manage-users/user-accounts/user-account-linking" rel="noreferrer">User Account Linking</a>.</p>{{end}}

<h2>Problems</h2>
{{if .Problems}}<table class="index" id="problems">
<thead><tr><th>status</th><th>kind</th><th>rows</th></tr></thead>
<tbody>
{{range .Problems}}<tr><td><span class="tag {{.Class}}">{{.Kind}}</span></td><td><a href="#{{.ID}}"><code>{{.Title}}</code></a></td><td class="n">{{n .Count}}</td></tr>
{{end}}</tbody>
</table>
{{end}}{{range .Problems}}<div class="kind" id="{{.ID}}">
<h3><span class="tag {{.Class}}">{{.Kind}}</span> <code>{{.Title}}</code> <span class="count">{{n .Count}} {{if eq .Count 1}}row{{else}}rows{{end}}{{if .Retryable}}, {{n .Retryable}} retryable with --resume{{end}}</span></h3>
{{template "rows" .}}</div>
{{else}}<p class="none">No invalid, failed, skipped or already linked rows.</p>
{{end}}
<h2 id="pairs">{{if eq .Pairs.Title "planned"}}Planned pairs{{else}}Linked pairs{{end}}</h2>
{{with .Pairs}}{{if .Pages}}<p class="meta">{{n .Count}} {{.Title}} {{if eq .Count 1}}pair{{else}}pairs{{end}}{{if .More}}: the first {{n .Most}} by input line are listed here, in pages of {{.PerPage}}; the other {{n .More}} are in the results file{{if .ResultsFile}} <b class="mono">{{.ResultsFile}}</b>{{end}}{{end}}.</p>
{{range .Pages}}<details class="kind page"{{if .Open}} open{{end}}><summary>{{$.Pairs.Title}} pairs {{n .From}}–{{n .To}}</summary>
<table>
<colgroup><col class="c-line"><col class="c-id"><col class="c-id"><col class="c-status">{{if $.Pairs.Warnings}}<col>{{end}}</colgroup>
<thead><tr><th>line</th><th>primary_user_id</th><th>secondary (provider|user_id)</th><th>status</th>{{if $.Pairs.Warnings}}<th>warning</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr><td class="line">{{.Line}}</td><td class="id">{{.Primary}}</td><td class="id">{{.Secondary}}</td><td>{{.Status}}</td>{{if $.Pairs.Warnings}}<td>{{.Warning}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
</details>
{{end}}{{else}}<p class="none">No pairs were planned or linked.</p>
{{end}}{{end}}
{{if .Run}}<h2>This run</h2>
<dl class="run">{{range .Run}}<div><dt>{{.Label}}</dt><dd>{{.Value}}</dd></div>{{end}}</dl>
{{end}}
<footer>Each list shows the first {{.Limit}} rows of its kind by input line; the results file holds every row (line 1 of the input is its header). Ids and messages are shown as written, with control and invisible characters spelled out as U+XXXX. Made by linkbatch; this page runs no script and loads nothing.</footer>
</main>
</body>
</html>
{{define "rows"}}{{if .Rows}}<table>
<colgroup><col class="c-line"><col class="c-id"><col class="c-id">{{if .Statuses}}<col{{if or .Details .Emails}} class="c-status"{{end}}>{{end}}{{if .Emails}}<col>{{end}}{{if .Details}}<col>{{end}}</colgroup>
<thead><tr><th>line</th><th>primary_user_id</th><th>secondary_user_id</th>{{if .Statuses}}<th>status</th>{{end}}{{if .Emails}}<th>emails (primary ↔ secondary)</th>{{end}}{{if .Details}}<th>detail</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr><td class="line">{{.Line}}</td><td class="id">{{.Primary}}</td><td class="id">{{.Secondary}}</td>{{if $.Statuses}}<td>{{.Status}}</td>{{end}}{{if $.Emails}}<td class="id emails">{{.Emails}}</td>{{end}}{{if $.Details}}<td>{{.Detail}}{{if .Retryable}} <i>(retryable)</i>{{end}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
{{if .More}}<p class="more">… and {{n .More}} more in the results file.</p>{{end}}{{else}}<p class="none">None.</p>{{end}}{{end}}`
