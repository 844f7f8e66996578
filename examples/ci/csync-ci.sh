#!/usr/bin/env bash
# The csync steps of the pipelines in examples/ci (GitHub Actions and GitLab CI call the
# same steps, and csync's own end-to-end test runs them): copy this file to ci/csync-ci.sh
# in the repository that holds the desired state. The pipelines run it as it is on the base
# (target) branch, never a pull request's copy (docs/SECURITY.md).
#
#   csync-ci.sh pr             validate; plan to Markdown (the review comment, csync keeps it
#                              under 60,000 characters) and JSON (the artefact that is applied
#                              after the merge), and the whole plan as text (csync show --detail)
#                              for the artefact; the comment names the artefact. Plan identity only.
#   csync-ci.sh apply [PLAN]   apply exactly the reviewed PLAN; when it is stale (exit 4) or
#                              missing: fail (CSYNC_APPLY_MODE=reviewed, the default) or, with
#                              CSYNC_APPLY_MODE=fresh, plan afresh, show it and apply that
#   csync-ci.sh drift          plan --detailed-exitcode: exit 2 when the site drifted. Plan identity only.
#
# Exit codes are csync's own (0 ok, 1 error, 2 drift, 3 invalid, 4 stale, 5 locked), passed
# through unchanged: nothing here ends in `|| true`, and pipelines run with pipefail. 64: this
# script was misused (a root key given to a plan step, a symbolic link in the desired state).
#
# Environment: CSYNC_STATE (desired-state file or directory; default desired-state),
# CSYNC_OUT (output directory; default csync-out), CSYNC_APPLY_MODE (reviewed | fresh),
# CSYNC (the csync command; default csync), CSYNC_ARTIFACT (the name the pipeline uploads
# $CSYNC_OUT/plan.json, plan.txt and plan.md under; default csync-plan) and CSYNC_ARTIFACT_URL
# (where a reviewer finds it; default this GitHub run's page or this GitLab job's artefacts).
# Keys, as their contents (CI secrets): CSYNC_PLAN_SSH_KEY (the plan identity: pr and drift),
# CSYNC_ROOT_SSH_KEY (root's: apply only; pr and drift refuse to run when it is set),
# CSYNC_KNOWN_HOSTS (the hosts' keys). Each is written to a directory of its own (mktemp -d,
# mode 700) that a trap removes when this script exits, however it exits; csync reads them
# there (CSYNC_PLAN_IDENTITY_FILE, CSYNC_IDENTITY_FILE, CSYNC_KNOWN_HOSTS_FILE) and the key
# variables are removed from its environment. Unset: the desired state's access paths.
set -euo pipefail

CSYNC=${CSYNC:-csync}
STATE=${CSYNC_STATE:-desired-state}
OUT=${CSYNC_OUT:-csync-out}
MODE=${CSYNC_APPLY_MODE:-reviewed}
ARTIFACT=${CSYNC_ARTIFACT:-csync-plan}
# GitHub refuses a comment over 65,536 characters; bytes are at least as many. csync keeps its
# Markdown under 60,000, so this guard only bites with a csync that does not.
COMMENT_LIMIT=65000

say() { printf 'csync-ci: %s\n' "$*" >&2; }
die() { say "$*"; exit 64; }
annotate() {  # a GitHub Actions annotation (level, text) when running there
  if [ "${GITHUB_ACTIONS:-}" = true ]; then printf '::%s::%s\n' "$1" "$2"; fi
}
# csync runs as a job this shell waits for, not in the foreground: bash runs a trap only once
# its foreground command has ended, so a cancelled job (TERM to this script alone) held the
# keys until csync finished; `wait` returns at once on a signal, and the trap passes it on.
# $CSYNC may be a command with arguments: split on purpose. Its input stays this script's.
CHILD=""
run() { local rc=0; $CSYNC "$@" <&0 & CHILD=$!; wait "$CHILD" || rc=$?; CHILD=""; return "$rc"; }

KEYS=""
IDENTITY=()  # --identity plan once the plan key is given; else csync's choice (access)
cleanup() { if [ -n "$KEYS" ]; then rm -rf -- "$KEYS"; fi; }
# stop CODE SIGNAL: the job was cancelled: csync gets the signal too (it starts no new action,
# releases the site lock and exits), this script waits for it, then exits; EXIT's trap
# removes the keys.
stop() {
  set +e  # leaving with the signal's status, whatever csync's
  if [ -n "$CHILD" ]; then
    kill -s "$2" "$CHILD" 2>/dev/null
    wait "$CHILD" 2>/dev/null
  fi
  exit "$1"
}
trap cleanup EXIT
trap 'stop 129 HUP' HUP
trap 'stop 130 INT' INT
trap 'stop 143 TERM' TERM

# keys plan|root: write the identity the step may hold, and the known hosts, to a fresh
# private directory removed on exit; point csync at them; drop the contents from the environment.
keys() {
  local identity=$1
  if [ "$identity" = plan ] && [ -n "${CSYNC_ROOT_SSH_KEY:-}" ]; then
    die "refusing to run a plan step with the root identity in its environment (CSYNC_ROOT_SSH_KEY): only apply may hold it"
  fi
  KEYS=$(umask 077 && mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/csync-keys.XXXXXXXX")
  if [ "$identity" = plan ] && [ -n "${CSYNC_PLAN_SSH_KEY:-}" ]; then
    (umask 077 && printf '%s\n' "$CSYNC_PLAN_SSH_KEY" > "$KEYS/plan_identity")
    export CSYNC_PLAN_IDENTITY_FILE="$KEYS/plan_identity"
    IDENTITY=(--identity plan)
  fi
  if [ "$identity" = root ] && [ -n "${CSYNC_ROOT_SSH_KEY:-}" ]; then
    (umask 077 && printf '%s\n' "$CSYNC_ROOT_SSH_KEY" > "$KEYS/root_identity")
    export CSYNC_IDENTITY_FILE="$KEYS/root_identity"
  fi
  if [ -n "${CSYNC_KNOWN_HOSTS:-}" ]; then
    printf '%s\n' "$CSYNC_KNOWN_HOSTS" > "$KEYS/known_hosts"
    export CSYNC_KNOWN_HOSTS_FILE="$KEYS/known_hosts"
  fi
  unset CSYNC_PLAN_SSH_KEY CSYNC_ROOT_SSH_KEY CSYNC_KNOWN_HOSTS
}

# A pull request's desired state is data: refuse symbolic links in it (a link to a file of
# the runner would be read, and could be quoted in an error message).
plain_files() {
  if [ -n "$(find "$STATE" -type l -print -quit 2>/dev/null)" ]; then
    die "refusing $STATE: it holds a symbolic link ($(find "$STATE" -type l -print -quit))"
  fi
}

# artifact_url: where the run's artefact is shown (CSYNC_ARTIFACT_URL, else the CI's own page).
artifact_url() {
  if [ -n "${CSYNC_ARTIFACT_URL:-}" ]; then
    printf '%s' "$CSYNC_ARTIFACT_URL"
  elif [ "${GITHUB_ACTIONS:-}" = true ] && [ -n "${GITHUB_RUN_ID:-}" ]; then
    printf '%s/%s/actions/runs/%s' "${GITHUB_SERVER_URL:-https://github.com}" "${GITHUB_REPOSITORY:-}" "$GITHUB_RUN_ID"
  elif [ -n "${CI_JOB_URL:-}" ]; then
    printf '%s/artifacts/browse/%s/' "$CI_JOB_URL" "$OUT"
  fi
}

# comment RC: the pull request's comment: the Markdown plan if it fits (else its first lines
# and a note), then where the whole plan is, and whether it can be applied.
comment() {
  local rc=$1 url size footer
  url=$(artifact_url)
  footer=$(
    echo
    echo "---"
    if [ -n "$url" ]; then
      printf "**The whole plan** is the artefact \`%s\` of [this run](%s): " "$ARTIFACT" "$url"
    else
      printf "**The whole plan** is the artefact \`%s\` of this run: " "$ARTIFACT"
    fi
    echo "\`plan.json\` (the plan a merge applies, per action), \`plan.txt\` (every action, as \`csync show plan.json --detail\` prints it), \`plan.md\` (this plan as Markdown)."
    echo
    if [ "$rc" -eq 0 ]; then
      echo "Merging applies exactly \`plan.json\` (a stale plan is refused)."
    else
      echo "**csync plan exited $rc**: this plan is not applicable as it stands."
    fi
  )
  echo "<!-- csync-plan -->"
  size=$(wc -c < "$OUT/plan.md")
  if [ "$size" -le $((COMMENT_LIMIT - 2000)) ]; then
    cat "$OUT/plan.md"
  else
    # the first lines that fit (the cluster operations come first), cut at a line's end
    head -c $((COMMENT_LIMIT - 2000)) "$OUT/plan.md" | sed '$d'
    echo
    echo "> **Cut to fit a comment:** the Markdown plan is $size bytes; the lines above are its beginning, the rest is in the artefact."
  fi
  printf '%s\n' "$footer"
}

pr() {
  keys plan
  plain_files
  mkdir -p "$OUT"
  run validate -f "$STATE"
  local rc=0 shown=0
  rm -f -- "$OUT/plan.json" "$OUT/plan.md" "$OUT/plan.txt" "$OUT/comment.md"  # nothing of an earlier run is posted or kept
  # exit 0: planned; 1: blocked or unknown items (the comment still shows them), then fail
  run plan -f "$STATE" "${IDENTITY[@]}" --format markdown --out "$OUT/plan.json" > "$OUT/plan.md" || rc=$?
  # the whole plan, one block per action, for the artefact: the saved plan rendered, no second probe
  if [ -f "$OUT/plan.json" ]; then
    run show "$OUT/plan.json" --detail > "$OUT/plan.txt" || shown=$?
  fi
  comment "$rc" > "$OUT/comment.md"
  cat "$OUT/plan.md"
  if [ "$shown" -ne 0 ]; then
    say "csync show --detail failed (exit $shown): $OUT/plan.txt is incomplete."
    if [ "$rc" -eq 0 ]; then rc=$shown; fi
  fi
  return "$rc"
}

apply() {
  local plan=${1:-$OUT/reviewed/plan.json} rc=0
  keys root
  mkdir -p "$OUT"
  if [ -f "$plan" ]; then
    run apply -f "$STATE" "$plan" || rc=$?
    if [ "$rc" -ne 4 ]; then
      return "$rc"
    fi
    say "STALE: the reviewed plan $plan no longer matches the desired state or the hosts (exit 4)."
    annotate error "csync: the reviewed plan is stale (exit 4)"
    if [ "$MODE" != fresh ]; then
      say "Nothing was applied. Plan again on a pull request and review it (or set CSYNC_APPLY_MODE=fresh)."
      return 4
    fi
  else
    say "no reviewed plan at $plan."
    annotate error "csync: no reviewed plan was found for this commit"
    if [ "$MODE" != fresh ]; then
      say "Nothing was applied. Open a pull request: its plan is what a merge applies (or set CSYNC_APPLY_MODE=fresh)."
      return 1
    fi
  fi
  say "CSYNC_APPLY_MODE=fresh: applying a fresh plan, which NO ONE REVIEWED; it is shown here and in $OUT/fresh-plan.md."
  annotate warning "csync: applied a fresh, unreviewed plan (CSYNC_APPLY_MODE=fresh)"
  rc=0
  run plan -f "$STATE" --identity root --format markdown --out "$OUT/fresh-plan.json" > "$OUT/fresh-plan.md" || rc=$?
  cat "$OUT/fresh-plan.md"
  if [ "$rc" -ne 0 ]; then
    return "$rc"
  fi
  run apply -f "$STATE" "$OUT/fresh-plan.json"
}

drift() {
  keys plan
  mkdir -p "$OUT"
  local rc=0
  run plan -f "$STATE" "${IDENTITY[@]}" --detailed-exitcode --format markdown > "$OUT/drift.md" || rc=$?
  cat "$OUT/drift.md"
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$OUT/drift.md" >> "$GITHUB_STEP_SUMMARY"; fi
  case $rc in
    0) say "no drift: the site matches $STATE." ;;
    2) say "DRIFT: the site differs from $STATE (exit 2); the plan above is what apply would change."
       annotate error "csync: the site drifted from its desired state" ;;
    *) say "csync plan failed (exit $rc)." ;;
  esac
  return "$rc"
}

case "${1:-}" in
  pr) pr ;;
  apply) shift; apply "$@" ;;
  drift) drift ;;
  *) say "usage: csync-ci.sh pr | apply [PLANFILE] | drift"; exit 64 ;;
esac
