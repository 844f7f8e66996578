#!/usr/bin/env bash
# Debian packages csync's lab and tests need. Idempotent; needs root.
set -euo pipefail
packages=(openssh-server openssh-client util-linux python3-cryptography openssl chromium fonts-dejavu-core posh original-awk)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts nothing here (no systemd), and csync's lab runs its own sshds.
# chromium renders `csync trust --format html` in a test (headless, screenshot).
# posh and original-awk make the lab's hpux userland (csync lab up --userland hpux): sh and awk.
