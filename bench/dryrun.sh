#!/bin/sh
# dryrun.sh [ROWS]: times a --dry-run of linkbatch over ROWS pairs (default
# 1,000,000) side by side with a plain encoding/csv read-and-write of the
# same file (bench/csvcopy), and prints wall time, CPU time and peak RSS of
# each, and their ratios. Needs GNU time (/usr/bin/time).
set -eu
rows=${1:-1000000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$(dirname "$0")/.."
go build -o "$dir/linkbatch" ./cmd/linkbatch
go build -o "$dir/csvcopy" ./bench/csvcopy
"$dir/csvcopy" -gen "$rows" -out "$dir/in.csv"
cat "$dir/in.csv" >/dev/null # both runs read it from the page cache

measure() { # name command...
	name=$1
	shift
	/usr/bin/time -f "%e %U %S %M" -o "$dir/$name.time" "$@" >/dev/null 2>"$dir/$name.stderr" || {
		echo "$name failed:" >&2
		tail -5 "$dir/$name.stderr" >&2
		exit 1
	}
	rm -f "$dir/out.csv" "$dir/out.csv.run.json"
}
measure csvcopy "$dir/csvcopy" -in "$dir/in.csv" -out "$dir/out.csv"
measure linkbatch "$dir/linkbatch" run --dry-run --no-progress --in "$dir/in.csv" --out "$dir/out.csv"
stderr_bytes=$(wc -c <"$dir/linkbatch.stderr")
index=$(grep -o '"index_bytes_per_row":[0-9.]*' "$dir/linkbatch.stderr" | head -1 | cut -d: -f2)
awk -v rows="$rows" -v stderr="$stderr_bytes" -v idx="${index:-?}" '
	FNR == 1 { wall[NR] = $1; cpu[NR] = $2 + $3; rss[NR] = $4 / 1024 }
	END {
		printf "rows: %d\n", rows
		printf "%-28s %8s %8s %10s\n", "", "wall s", "cpu s", "peak RSS MB"
		printf "%-28s %8.2f %8.2f %10.1f\n", "encoding/csv read+write", wall[1], cpu[1], rss[1]
		printf "%-28s %8.2f %8.2f %10.1f\n", "linkbatch run --dry-run", wall[2], cpu[2], rss[2]
		printf "%-28s %8.2f %8.2f %10.2f\n", "ratio", wall[2] / wall[1], cpu[2] / cpu[1], rss[2] / rss[1]
		printf "log written to stderr: %d bytes; conflict index: %s bytes per row\n", stderr, idx
	}' "$dir/csvcopy.time" "$dir/linkbatch.time"
