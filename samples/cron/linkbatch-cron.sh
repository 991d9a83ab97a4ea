#!/usr/bin/env bash
# linkbatch-cron.sh runs 'linkbatch run' unattended, from cron, a systemd
# timer or a Kubernetes CronJob, and keeps the results of every run.
#
# Usage: linkbatch-cron.sh [-e ENV_FILE] IN STATE_DIR [LINKBATCH_FLAG...]
#
#   IN         the input CSV of pairs; a producer should write it under another
#              name and rename it into place, so that it is never read half written.
#              Or a queue, redis://...?stream=NAME or nats://...?stream=NAME
#              (see "A queue" below); its password goes in ENV_FILE, never in IN
#   STATE_DIR  where the runs keep their files (created, mode 700):
#                input.csv            the copy of IN that results.csv belongs to
#                results.csv          the results of the current run (+ .run.json)
#                status               "running", or "exit N" once linkbatch ended
#                linkbatch.log        JSON log lines, appended: linkbatch's own and
#                                     this wrapper's (logger "linkbatch-cron")
#                linkbatch.lock       the lock that keeps two runs from overlapping
#                results.csv.STAMP    earlier runs (with .run.json), and their
#                input.csv.STAMP      inputs; STAMP is the UTC time of the rotation
#   -e ENV_FILE  read the credentials from ENV_FILE (KEY=value lines, the format
#              of systemd's EnvironmentFile): AUTH0_DOMAIN and either
#              AUTH0_CLIENT_ID + AUTH0_CLIENT_SECRET or AUTH0_TOKEN; optional
#              AUTH0_AUDIENCE, HTTPS_PROXY, NO_PROXY, and a queue's
#              LINKBATCH_REDIS_PASSWORD or LINKBATCH_NATS_PASSWORD. The file must belong to the
#              user running the job (or root) and be readable by nobody else
#              (mode 600 or 400). It is parsed, not executed. Without -e the
#              credentials must already be in the environment (systemd
#              EnvironmentFile=, a Kubernetes Secret).
#   LINKBATCH_FLAG  more flags for 'linkbatch run', such as --grace 30s or
#              --rate 10. The wrapper sets --in, --out, --resume and --drain itself;
#              --dry-run, --simulate, --retry-failed and secrets as flags are
#              refused.
#
# Environment: LINKBATCH_BIN, the linkbatch binary (default: linkbatch on PATH).
#
# Policy, decided under the lock on every start:
#   - No results yet: copy IN to input.csv and start a new run.
#   - The last run is incomplete (status "running" because the job died, or
#     "exit 2" or "exit 3": refused credentials, interrupted, unwritable
#     results): resume it, with its own copy of the input, whatever IN holds
#     now. A changed IN waits until that run has finished.
#   - The last run finished (exit 0 or 1) and IN is byte for byte the same:
#     resume it. Nothing is left after exit 0, so nothing is sent; after exit 1
#     the rows that failed for a transient reason are tried again.
#   - The last run finished and IN changed: rename results.csv, its .run.json
#     and input.csv with a .STAMP suffix, then start a new run of IN.
# Old .STAMP files are never deleted; they hold user ids, so prune them
# according to your retention rules.
#
# A queue: each start drains it (linkbatch run --drain) and ends once nothing
# is left to read, claim or finish. The queue keeps the state: what a run
# did not acknowledge is delivered again to the next one, so there is no copy
# of the input, no resume and no rotation. Results are appended to
# results.csv, one row per request with its message_id (a request delivered
# again after its result was written is acknowledged without a second row).
#
# Exit status: linkbatch's (0 all done, 1 some rows invalid or failed,
# 2 configuration error, 3 aborted), 64 for a usage or set-up error of this
# wrapper (nothing was sent), 75 when another run holds the lock (nothing
# was done).
#
# SIGTERM or SIGINT is passed on to linkbatch once per signal received: the
# first stops new rows and lets rows in flight finish within --grace, a second
# cancels them. linkbatch runs in its own session so that a signal sent to the
# whole process group is not delivered to it twice; under systemd use
# KillMode=mixed for the same reason. linkbatch inherits the lock, so even if
# this script is killed no second run starts before linkbatch has exited.
#
# Needs bash 4.4+, flock and setsid (util-linux), cmp, and a POSIX userland.

set -euo pipefail
umask 077

readonly EX_USAGE=64 EX_TEMPFAIL=75
prog=linkbatch-cron
log_file=""

usage() {
	echo "usage: linkbatch-cron.sh [-e ENV_FILE] IN STATE_DIR [LINKBATCH_FLAG...]" >&2
	exit "$EX_USAGE"
}

json_escape() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/\\n}
	s=${s//$'\r'/\\r}
	s=${s//$'\t'/\\t}
	s=${s//[[:cntrl:]]/?}
	printf '%s' "$s"
}

# log LEVEL MSG [KEY VALUE]... appends one JSON line to the log, once the
# state directory is known. Values made of digits only are written as numbers.
log() {
	[[ -n $log_file ]] || return 0
	local level=$1 msg=$2 line
	shift 2
	line=$(printf '{"level":"%s","ts":"%s","logger":"%s","msg":"%s"' \
		"$level" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$prog" "$(json_escape "$msg")")
	while (($# >= 2)); do
		if [[ $2 =~ ^[0-9]+$ ]]; then
			line+=$(printf ',"%s":%s' "$1" "$2")
		else
			line+=$(printf ',"%s":"%s"' "$1" "$(json_escape "$2")")
		fi
		shift 2
	done
	printf '%s}\n' "$line" >>"$log_file"
}

# fail CODE MSG [KEY VALUE]... reports a problem on stderr and in the log,
# then exits with CODE.
fail() {
	local code=$1 msg=$2
	shift 2
	echo "$prog: $msg" >&2
	log error "$msg" exit_code "$code" "$@"
	exit "$code"
}

# write_atomic PATH TEXT replaces PATH with TEXT and a newline.
write_atomic() {
	printf '%s\n' "$2" >"$1.tmp"
	mv -f -- "$1.tmp" "$1"
}

# file_mode_owner PATH prints the octal permission bits and the owner's uid.
file_mode_owner() {
	stat -L -c '%a %u' -- "$1" 2>/dev/null || stat -L -f '%Lp %u' -- "$1"
}

# load_env_file PATH exports the variables of an env file after checking that
# only its owner can read it. Values are never printed.
load_env_file() {
	local file=$1 mode_owner mode owner n=0 raw key value
	[[ -f $file ]] || fail "$EX_USAGE" "env file $file is not a regular file"
	mode_owner=$(file_mode_owner "$file") || fail "$EX_USAGE" "cannot stat env file $file"
	mode=${mode_owner% *}
	owner=${mode_owner#* }
	if ((8#$mode & 8#077)); then
		fail "$EX_USAGE" "env file $file has mode $mode; other users can read the credentials: chmod 600 it"
	fi
	if [[ $owner != "$(id -u)" && $owner != 0 ]]; then
		fail "$EX_USAGE" "env file $file belongs to uid $owner, not to the user running the job"
	fi
	unset AUTH0_DOMAIN AUTH0_TOKEN AUTH0_CLIENT_ID AUTH0_CLIENT_SECRET AUTH0_AUDIENCE \
		LINKBATCH_REDIS_PASSWORD LINKBATCH_NATS_PASSWORD
	while IFS= read -r raw || [[ -n $raw ]]; do
		n=$((n + 1))
		raw=${raw%$'\r'}
		raw=${raw#"${raw%%[![:space:]]*}"}
		[[ -z $raw || $raw == \#* || $raw == \;* ]] && continue
		[[ $raw == *=* ]] || fail "$EX_USAGE" "env file $file line $n: not KEY=value"
		key=${raw%%=*}
		key=${key%"${key##*[![:space:]]}"}
		value=${raw#*=}
		value=${value#"${value%%[![:space:]]*}"}
		value=${value%"${value##*[![:space:]]}"}
		if [[ ${#value} -ge 2 && (($value == \"*\" || $value == \'*\')) && ${value:0:1} == "${value: -1}" ]]; then
			value=${value:1:${#value}-2}
		fi
		case $key in
		AUTH0_DOMAIN | AUTH0_TOKEN | AUTH0_CLIENT_ID | AUTH0_CLIENT_SECRET | AUTH0_AUDIENCE | HTTPS_PROXY | NO_PROXY | \
			LINKBATCH_REDIS_PASSWORD | LINKBATCH_NATS_PASSWORD)
			export "$key=$value"
			;;
		*) fail "$EX_USAGE" "env file $file line $n: unknown variable ${key//[^A-Za-z0-9_]/?}" ;;
		esac
	done <"$file"
}

# rotate moves the finished run's files aside under one free STAMP suffix.
rotate() {
	local stamp suffix i=0 f
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	suffix=$stamp
	while [[ -e $state/results.csv.$suffix || -e $state/input.csv.$suffix ]]; do
		i=$((i + 1))
		suffix=$stamp-$i
	done
	# results.csv goes last: until it has moved, a new start sees the same
	# finished run and completes the rotation.
	for f in input.csv results.csv.run.json; do
		if [[ -e $state/$f ]]; then
			mv -f -- "$state/$f" "$state/${f%%.*}.csv.$suffix${f#*.csv}"
		fi
	done
	mv -f -- "$state/results.csv" "$state/results.csv.$suffix"
	rm -f -- "$state/status"
	log info "input changed after a finished run: previous results kept" \
		results "$state/results.csv.$suffix" input "$state/input.csv.$suffix"
}

# start_file_run decides, under the lock, whether to resume the last run of
# a file or to start a new one (see Policy above), and sets resume.
start_file_run() {
	local status="" code
	if [[ -s $state/status ]]; then
		read -r status code <"$state/status" || true
		[[ $status == exit ]] && status="exit ${code:-?}"
	fi

	if [[ -s $state/results.csv ]]; then
		[[ -f $state/input.csv ]] || fail "$EX_USAGE" "$state/results.csv exists but $state/input.csv, its input, does not; move results.csv away to start afresh"
		case $status in
		"exit 0" | "exit 1")
			if cmp -s -- "$in" "$state/input.csv"; then
				resume=1
				log info "input unchanged since the last finished run: resuming it" last "$status"
			else
				[[ -f $in && -r $in ]] || fail "$EX_USAGE" "cannot read input $in"
				rotate
			fi
			;;
		*)
			resume=1
			if [[ -f $in ]] && ! cmp -s -- "$in" "$state/input.csv"; then
				echo "$prog: the last run is incomplete (${status:-no status}); resuming it; the new input waits for a later run" >&2
			fi
			log warn "the last run is incomplete: resuming it with its own input" last "${status:-unknown}"
			;;
		esac
	fi

	if ((!resume)); then
		[[ -f $in && -r $in ]] || fail "$EX_USAGE" "cannot read input $in"
		cp -- "$in" "$state/input.csv.tmp"
		mv -f -- "$state/input.csv.tmp" "$state/input.csv"
		log info "starting a new run" input "$in"
	fi
}

env_file=""
while getopts ":e:h" opt; do
	case $opt in
	e) env_file=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
(($# >= 2)) || usage
in=$1
state=$2
shift 2
extra=("$@")

bin=${LINKBATCH_BIN:-linkbatch}
command -v -- "$bin" >/dev/null 2>&1 || fail "$EX_USAGE" "linkbatch binary $bin not found (set LINKBATCH_BIN)"
for tool in flock setsid cmp; do
	command -v "$tool" >/dev/null 2>&1 || fail "$EX_USAGE" "$tool not found; install util-linux and diffutils"
done
for arg in "${extra[@]}"; do
	[[ $arg == -* ]] || continue
	name=${arg#-}
	name=${name#-}
	name=${name%%=*}
	case $name in
	in | out | resume | drain) fail "$EX_USAGE" "the wrapper sets --in, --out, --resume and --drain itself; remove $name" ;;
	dry-run | simulate | retry-failed) fail "$EX_USAGE" "run linkbatch directly for $name; the wrapper's state directory is for real runs" ;;
	token | client-secret) fail "$EX_USAGE" "secrets on the command line are visible in ps; put them in the env file" ;;
	*) ;;
	esac
done

[[ $in != - ]] || fail "$EX_USAGE" "IN must be a file or a queue, not standard input"
queue=0
shopt -s nocasematch
if [[ $in =~ ^(redis|rediss|nats)://([^/?#@]*)@ ]]; then
	queue=1
	if [[ ${BASH_REMATCH[2]} == *:* ]]; then
		shopt -u nocasematch
		fail "$EX_USAGE" "the queue URL holds a password, which ps and the crontab show; put it in the env file as LINKBATCH_REDIS_PASSWORD or LINKBATCH_NATS_PASSWORD"
	fi
elif [[ $in =~ ^(redis|rediss|nats):// ]]; then
	queue=1
fi
shopt -u nocasematch
mkdir -p -- "$state" || fail "$EX_USAGE" "cannot create state directory $state"
log_file=$state/linkbatch.log
touch -- "$log_file" || fail "$EX_USAGE" "cannot write $log_file"

# The lock stays held by file descriptor 9 until this script and linkbatch,
# which inherits it, have both exited.
exec 9>>"$state/linkbatch.lock"
if ! flock -n 9; then
	echo "$prog: another run holds $state/linkbatch.lock; nothing done" >&2
	log warn "another run holds the lock; nothing done" lock "$state/linkbatch.lock" exit_code "$EX_TEMPFAIL"
	exit "$EX_TEMPFAIL"
fi

if [[ -n $env_file ]]; then
	load_env_file "$env_file"
fi

# Signals arriving before linkbatch starts end the job before it sends
# anything; afterwards they are passed on.
child=""
signalled=0
# shellcheck disable=SC2317 # reached through the trap
on_signal() {
	signalled=1
	if [[ -n $child ]]; then
		kill -s TERM "$child" 2>/dev/null || true
	fi
}
trap on_signal TERM INT

resume=0
if ((queue)); then
	# The queue holds the state: drain it, appending to results.csv.
	args=(run --drain --in "$in" --out "$state/results.csv" "${extra[@]}")
	log info "draining the queue"
else
	start_file_run
	args=(run --in "$state/input.csv" --out "$state/results.csv")
	((resume)) && args+=(--resume)
	args+=("${extra[@]}")
fi

if ((signalled)); then
	fail 3 "signal received before linkbatch started; nothing sent"
fi
write_atomic "$state/status" running
setsid -w "$bin" "${args[@]}" </dev/null >>"$log_file" 2>&1 &
child=$!
while :; do
	signalled=0
	rc=0
	wait "$child" || rc=$?
	((signalled)) || break
done
child=""
write_atomic "$state/status" "exit $rc"
log info "linkbatch exited" exit_code "$rc" resumed "$resume"
if ((rc != 0)); then
	echo "$prog: linkbatch exited $rc; see $log_file and $state/results.csv" >&2
fi
exit "$rc"
