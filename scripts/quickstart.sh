#!/usr/bin/env bash
# Fresh machine to a converged lab in one command: set up, start the lab in the `seed`
# state (the manual's excerpt), plan, apply, and prove convergence. Needs root.
# The lab stays up for you to explore (`csync lab status`, `csync facts`); stop it with
# `csync lab down`, or set CSYNC_QUICKSTART_DOWN=1 to stop it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
csync lab down >/dev/null 2>&1 || true
csync lab up --scenario seed >/dev/null
mkdir -p .csync
echo "== csync plan (saved for review: it starts the package and dispatches a member)"
rc=0; csync plan -f desired-state/lab.yaml --detailed-exitcode --out .csync/plan.json || rc=$?
[ "$rc" = 2 ] || { echo "expected changes (exit 2), got exit $rc" >&2; exit 1; }
echo "== csync apply (exactly the reviewed plan)"
csync apply .csync/plan.json -f desired-state/lab.yaml
echo "== csync plan (after apply)"
csync plan -f desired-state/lab.yaml --detailed-exitcode
if [ "${CSYNC_QUICKSTART_DOWN:-0}" = 1 ]; then csync lab down; else echo "The lab is still up: csync lab status; csync lab down"; fi
