# csync probe, format 1. POSIX sh + awk only (HP-UX has no Python).
# reconciler/commands.py prepends the quoted parameters:
#   CF       cfengine work dir            ROLE     member | master | client
#   MOUNT    package mount point (members; empty otherwise)
#   MKEYS    cluster key dir relative to MOUNT       MINPUTS  master inputs dir
#   STATE    csync state dir on the master (inventory)  SGPATH  Serviceguard bin dirs
# Prints one JSON document. Raw material (listings, PEM blocks of *public* keys, cksum
# lines, cmviewcl lines) goes out as arrays of strings; parsing is csync's job.
# Never read: localhost.priv, anything behind a symlink, any line of a key file outside a
# "BEGIN RSA PUBLIC KEY" block.
PATH=$SGPATH:/usr/bin:/bin:/usr/sbin:$PATH
LC_ALL=C
export PATH LC_ALL
umask 077

# Lines of stdin as a JSON array of strings.
j() {
  awk 'BEGIN { printf "[" }
  {
    gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/\r/, "\\r")
    gsub(/[\001-\037\177]/, "?")
    printf "%s\"%s\"", (NR > 1 ? "," : ""), $0
  }
  END { printf "]" }'
}

kind() {
  if [ -L "$1" ]; then echo symlink
  elif [ -d "$1" ]; then echo dir
  elif [ -f "$1" ]; then echo file
  elif [ -e "$1" ]; then echo other
  else echo missing
  fi
}

# Key store listing: "L <ls -lnq line>" for every entry, "S name" for a symlinked key file
# (not followed), then "F name" and "P <pem line>" per regular key file.
keys() {
  d=$1
  [ "$(kind "$d")" = dir ] || return 0
  ls -lnq "$d" 2>/dev/null | sed -n 's/^/L /p'
  files=
  for f in "$d"/localhost.pub "$d"/root-*.pub; do
    b=${f##*/}
    case $b in
      localhost.pub) ;;
      root-*.pub)
        ip=${b#root-}; ip=${ip%.pub}
        case $ip in ''|*[!0-9.]*) continue ;; esac ;;
      *) continue ;;
    esac
    if [ -L "$f" ]; then echo "S $b"
    elif [ -f "$f" ]; then files="$files $f"
    fi
  done
  [ -n "$files" ] || return 0
  # $files is word-split on purpose: names are strictly [0-9.a-z-] and CF has no blanks.
  awk 'FNR == 1 { n = FILENAME; sub(/.*\//, "", n); print "F " n; inblk = 0; c = 0 }
       /^-----BEGIN RSA PUBLIC KEY-----/ { inblk = 1 }
       inblk && c < 64 { print "P " $0; c++ }
       /^-----END RSA PUBLIC KEY-----/ { inblk = 0 }' $files </dev/null
}

# One cksum line per regular file below a directory, relative paths, sorted.
tree() {
  [ "$(kind "$1")" = dir ] || return 0
  (cd "$1" && find . -type f -exec cksum {} + 2>/dev/null | sort)
}

printf '{"format":1,"hostname":%s' "$(uname -n | j)"
printf ',"cf":{"dir":"%s","ppkeys":"%s","inputs":"%s"}' \
  "$(kind "$CF")" "$(kind "$CF/ppkeys")" "$(kind "$CF/inputs")"
printf ',"keys":%s' "$(keys "$CF/ppkeys" | j)"
printf ',"inputs":%s' "$(tree "$CF/inputs" | j)"

if [ "$ROLE" = member ]; then
  if command -v cmviewcl >/dev/null 2>&1; then
    out=$(cmviewcl -v -f line 2>&1); rc=$?
  else
    out="cmviewcl: command not found"; rc=127
  fi
  printf ',"cmviewcl":{"rc":%d,"lines":%s}' "$rc" "$(printf '%s\n' "$out" | j)"
  mounted=false
  [ "$(kind "$MOUNT/dsau/cfengine_master")" = dir ] && mounted=true
  printf ',"pkgfs":{"mount":"%s","mounted":%s' "$(kind "$MOUNT")" "$mounted"
  if [ $mounted = true ]; then
    printf ',"keys":%s' "$(keys "$MOUNT/$MKEYS" | j)"
    printf ',"inputs":%s' "$(tree "$MOUNT/$MINPUTS" | j)"
    printf ',"inventory":%s' "$( [ -f "$MOUNT/$STATE/inventory" ] && grep -E '^[0-9.]+$' "$MOUNT/$STATE/inventory" | j || echo null)"
    printf ',"lock":%s' "$( [ -f "$MOUNT/$STATE/lock.json" ] && head -c 4096 "$MOUNT/$STATE/lock.json" | j || echo null)"
  fi
  printf '}'
elif [ "$ROLE" = master ]; then
  printf ',"master":{"inputs_dir":"%s","inputs":%s' "$(kind "$MINPUTS")" "$(tree "$MINPUTS" | j)"
  printf ',"inventory":%s' "$( [ -f "$STATE/inventory" ] && grep -E '^[0-9.]+$' "$STATE/inventory" | j || echo null)"
  printf ',"lock":%s}' "$( [ -f "$STATE/lock.json" ] && head -c 4096 "$STATE/lock.json" | j || echo null)"
fi

# ssh trust: public keys only; a line that is not a key (a symlink to /etc/shadow...) is dropped.
sshkeys() {
  awk '/^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-[a-z0-9]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+\/=]+/ ||
       / (ssh-(rsa|ed25519|dss)|ecdsa-sha2-[a-z0-9]+) [A-Za-z0-9+\/=]+/ { print }' "$@" 2>/dev/null </dev/null
}
pubs=
for f in "$HOME"/.ssh/id_*.pub; do [ -f "$f" ] && [ ! -L "$f" ] && pubs="$pubs $f"; done
printf ',"ssh":{"public":%s' "$( [ -n "$pubs" ] && sshkeys $pubs | j || echo '[]')"
printf ',"authorized":%s}' "$( [ -f "$HOME/.ssh/authorized_keys" ] && sshkeys "$HOME/.ssh/authorized_keys" | j || echo '[]')"
printf '}\n'
