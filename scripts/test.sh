#!/usr/bin/env bash
# The test command (README: "Tests"). The lab tests need root: they start real sshd hosts.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "csync's lab tests start sshd hosts in namespaces and need root; run as root." >&2
  exit 1
fi
exec python3 -m pytest -q -n 2 "$@"
