# csync probe, format 1. POSIX sh + awk only (HP-UX has no Python).
# reconciler/driver/commands.py prepends the quoted parameters:
#   CF       cfengine work dir            ROLE     member | master | client
#   MOUNT    package mount point (members; empty otherwise)
#   MDIR     master dir relative to MOUNT (present: mounted)  MKEYS  cluster key dir relative to MOUNT
#   MINPUTS  master inputs dir           STATE  csync state dir on the master (inventory)
#   PKGFILES the package's files on a member (paths.package_files_dir: /etc/cmcluster/csync)
#   SGPATH   Serviceguard bin dirs (platform.serviceguard_path), searched first
#   SGFORMAT auto | line | table: the cmviewcl format read (platform.cmviewcl_format)
#   OWNKEY, PEERPFX, PEERSFX  the key file names (dsau.py)
#   PROG     csync's probe program (driver/probeprogram.py): its version line is reported
#   BOUNDED  "stdin": end the probe when its standard input closes (below); empty: do not
# Prints one JSON document. Raw material (listings, PEM blocks of *public* keys, cksum
# lines, cmviewcl lines) goes out as arrays of strings; parsing is csync's job.
# Never read: localhost.priv, anything behind a symlink, any line of a key file outside a
# "BEGIN RSA PUBLIC KEY" block.
#
# Cost: the probe runs on every host of a site on every plan, so it starts as few programs
# as it can (a client: uname, ls, cksum and one awk). The shell below writes one
# stream; the awk at the end turns it into the JSON document and reads the small files
# itself. Stream lines starting with "%%" are the shell's instructions to the awk:
#   %%J frag   JSON structure (a fixed fragment of this script); after "[" come elements
#   %%P pfx    prefix for the data lines that follow ("L " for a listing), %%P alone: none
#   %%D dir    data lines are `cksum` lines of files below dir: make their paths ./relative
#   %%S text   one element, as is
#   %%F path   a key file: "F <name>", then "P <line>" for its RSA PUBLIC KEY block only
#   %%A path   an ssh key file: its public key lines only (anything else is dropped)
#   %%I path   an inventory: its entry lines only ("HOST root-PEER.pub", "generation N", or an
#              address: csync's first format)
#   %%T path   a text file: its lines, at most 4096 bytes
#   %%H path   csync's probe program: its version line (one of its first 3 lines), nothing else
#   %%C name   the section the next records belong to (for the awk's own read errors)
#   %%E section tool status, message lines, %%e: a command that failed (see `run`)
#   %%K path   cfservd.conf: its HostnameKeys lines only (comments cut), at most 16
#   %%R path   a cfrun hosts file: "S <line>" for each setting line (domain, hostnamekeys, ...)
#              and "H <first word>" for each host line; comments dropped
# Any other line is data: one element of the array being written. The data comes from
# uname, ls -q, cksum and cmviewcl; a host that lies can forge its own answer, never
# another host's, and the awk only ever writes well-formed JSON strings for it.
#
# A failure is never an empty answer: every program's exit status is checked, and a program
# that fails (or a file the awk cannot read) becomes an element of "errors" (section, tool,
# status, its message); csync takes the host's facts as unknown then (facts.py).
PATH=$SGPATH:/usr/bin:/bin:/usr/sbin:$PATH
LC_ALL=C
export PATH LC_ALL
umask 077

# run SECTION TOOL ARG...: TOOL's output goes to the stream as data, its messages are kept;
# a non-zero exit status becomes an error record of SECTION.
run() {
  s=$1; shift
  e=$("$@" 2>&1 >&3); r=$?
  [ $r = 0 ] || fail "$s" "$1" $r "$e"
}

# fail SECTION TOOL STATUS MESSAGE: an error record.
fail() {
  echo "%%E $1 $2 $3"
  [ -z "$4" ] || printf '%s\n' "$4"
  echo "%%e"
}

# kind PATH: sets k to symlink, dir, file, other or missing (no subshell: a builtin test).
kind() {
  if [ -L "$1" ]; then k=symlink
  elif [ -d "$1" ]; then k=dir
  elif [ -f "$1" ]; then k=file
  elif [ -e "$1" ]; then k=other
  else k=missing
  fi
}

# Key store: "L <ls -lnq line>" for every entry, "S name" for a symlinked key file (not
# followed), "F name" and "P <pem line>" per regular key file. Peer keys are named by an
# address or a host name (root-<host as written>.pub, which cfrun looks up first); any other
# name is skipped here, and csync checks every name again.
keys() {
  kind "$1"
  [ "$k" = dir ] || return 0
  echo "%%C $2"
  echo "%%P L "
  run "$2" ls -lnq "$1"
  echo "%%P"
  for f in "$1/$OWNKEY" "$1/$PEERPFX"*"$PEERSFX"; do
    b=${f##*/}
    case $b in
      "$OWNKEY") ;;
      "$PEERPFX"*"$PEERSFX")
        peer=${b#"$PEERPFX"}; peer=${peer%"$PEERSFX"}
        case $peer in ''|*[!A-Za-z0-9.-]*) continue ;; esac ;;
      *) continue ;;
    esac
    if [ -L "$f" ]; then echo "%%S S $b"
    elif [ -f "$f" ]; then echo "%%F $f"
    fi
  done
}

# One cksum line per regular file below a directory, ./relative paths (csync sorts them). A
# directory without subdirectories (the usual inputs) is listed by the shell's glob, no
# program, and read by one cksum; one with a subdirectory, or with more than 500 files (one
# command line), by find. Either way: regular files only, hidden ones too, no symlink followed.
# A file that goes between the listing and cksum (cfagent or the dispatcher replacing an
# input) makes cksum fail: the listing is taken again, up to twice, a second apart, and only a
# third failure is reported (through run, with cksum's message).
tree() {
  kind "$1"
  [ "$k" = dir ] || return 0
  echo "%%D $1"
  td=$1 ts=$2
  for t in 1 2 3; do
    deep=
    set --
    for f in "$td"/* "$td"/.[!.]* "$td"/..?*; do
      [ ! -L "$f" ] || continue
      if [ -d "$f" ]; then deep=1; break; fi
      [ ! -f "$f" ] || set -- "$@" "$f"
    done
    [ $# -le 500 ] || deep=1
    if [ -n "$deep" ]; then set -- find "$td" -type f -exec cksum {} +
    elif [ $# = 0 ]; then echo "%%D"; return 0
    else set -- cksum "$@"
    fi
    if [ $t = 3 ]; then run "$ts" "$@"; echo "%%D"; return 0; fi
    if o=$("$@" 2>/dev/null); then
      [ -z "$o" ] || printf '%s\n' "$o"
      echo "%%D"
      return 0
    fi
    sleep 1
  done
}

# A file's lines through one of the awk's readers (I or T), or null when it is no file.
optfile() {
  if [ -f "$2" ] && [ ! -L "$2" ]; then echo "%%C $3"; echo "%%J ["; echo "%%$1 $2"; echo "%%J ]"
  else echo "%%J null"
  fi
}

# probe: one probe, its JSON document on stdout; its status is the awk's.
probe() {
{
  exec 3>&1  # run() sends a program's output here: into the pipe to the awk
  echo '%%J {"format":1,"hostname":['
  run hostname uname -n
  kind "$CF"; echo "%%J ],\"cf\":{\"dir\":\"$k\""
  kind "$CF/ppkeys"; echo "%%J ,\"ppkeys\":\"$k\""
  kind "$CF/inputs"; echo "%%J ,\"inputs\":\"$k\"},\"keys\":["
  keys "$CF/ppkeys" keys
  echo '%%J ],"inputs":['
  tree "$CF/inputs" inputs
  echo '%%J ],"cfservd":'; optfile K "$CF/inputs/cfservd.conf" cfservd
  if [ "$ROLE" != client ]; then
    echo '%%J ,"cfrun_hosts":'; optfile R "$CF/inputs/cfrun.hosts" cfrun-hosts
  fi

  if [ "$ROLE" = member ]; then
    # SGFORMAT auto: the line format from A.11.18; an older release refuses -f (and so does a
    # cluster that is down): then the table format, which every release prints. Both fail:
    # the first answer is reported. line: the line format only; table: the table format only
    # (line_rc null: -f line was not tried).
    lrc=null
    if command -v cmviewcl >/dev/null 2>&1; then
      rc=1; fmt=line
      if [ "$SGFORMAT" != table ]; then
        out=$(cmviewcl -v -f line 2>&1); rc=$?; lrc=$rc
      fi
      if [ "$SGFORMAT" = table ] || { [ "$SGFORMAT" = auto ] && [ $rc != 0 ]; }; then
        tab=$(cmviewcl -v 2>&1); trc=$?
        if [ "$SGFORMAT" = table ] || [ $trc = 0 ]; then out=$tab; rc=$trc; fmt=table; fi
      fi
    else
      out="cmviewcl: command not found (searched $SGPATH and PATH)"; rc=127; fmt=line; lrc=127
    fi
    case $rc in *[!0-9]*|'') rc=1 ;; esac
    case $lrc in null) ;; *[!0-9]*|'') lrc=1 ;; esac
    echo "%%J ,\"cmviewcl\":{\"format\":\"$fmt\",\"line_rc\":$lrc,\"lines\":["
    [ -z "$out" ] || printf '%s\n' "$out"
    echo "%%J ],\"rc\":$rc}"
    # the package files the add-member processing leaves (a count; the shell's glob, no program)
    n=0; for f in "$PKGFILES"/*; do [ -f "$f" ] && [ ! -L "$f" ] && n=$((n + 1)); done
    kind "$PKGFILES"; echo "%%J ,\"pkgfiles\":{\"dir\":\"$k\",\"count\":$n}"
    kind "$MOUNT/$MDIR"
    if [ "$k" = dir ]; then mounted=true; else mounted=false; fi
    kind "$MOUNT"; echo "%%J ,\"pkgfs\":{\"mount\":\"$k\",\"mounted\":$mounted"
    if [ $mounted = true ]; then
      echo '%%J ,"keys":['; keys "$MOUNT/$MKEYS" pkgfs-keys
      echo '%%J ],"inputs":['; tree "$MOUNT/$MINPUTS" pkgfs-inputs
      echo '%%J ],"cfrun_hosts":'; optfile R "$MOUNT/$MINPUTS/cfrun.hosts" pkgfs-cfrun-hosts
      echo '%%J ,"inventory":'; optfile I "$MOUNT/$STATE/inventory" inventory
      echo '%%J ,"lock":'; optfile T "$MOUNT/$STATE/lock.json" lock
    fi
    echo '%%J }'
  elif [ "$ROLE" = master ]; then
    kind "$MINPUTS"; echo "%%J ,\"master\":{\"inputs_dir\":\"$k\",\"inputs\":["
    tree "$MINPUTS" master-inputs
    echo '%%J ],"cfrun_hosts":'; optfile R "$MINPUTS/cfrun.hosts" cfrun-hosts
    echo '%%J ,"inventory":'; optfile I "$STATE/inventory" inventory
    echo '%%J ,"lock":'; optfile T "$STATE/lock.json" lock
    echo '%%J }'
  fi

  # ssh trust: public keys only; a line that is not a key (a symlink to /etc/shadow...) is dropped.
  echo '%%C ssh'
  echo '%%J ,"ssh":{"public":['
  for f in "$HOME"/.ssh/id_*.pub; do [ -f "$f" ] && [ ! -L "$f" ] && echo "%%A $f"; done
  echo '%%J ],"authorized":['
  [ -f "$HOME/.ssh/authorized_keys" ] && echo "%%A $HOME/.ssh/authorized_keys"
  echo '%%J ]}'

  # csync's probe program (the plan identity's forced command): its version line only
  echo '%%C program'
  kind "$PROG"; echo "%%J ,\"program\":{\"kind\":\"$k\",\"header\":"; optfile H "$PROG" program; echo '%%J }'
} </dev/null | awk '
function str(s) {
  gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\t/, "\\t", s); gsub(/\r/, "\\r", s)
  gsub(/[\001-\037\177]/, "?", s)
  return "\"" s "\""
}
function el(s) {
  printf "%s%s", (first ? "" : ","), str(s)
  first = 0
}
function err(section, tool, status, message) {
  errs = errs (nerr++ ? "," : "") "{\"section\":" str(section) ",\"tool\":" str(tool) ",\"status\":" (status + 0) ",\"message\":" str(substr(message, 1, 500)) "}"
}
function sshkey(s) {
  return s ~ /^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-[a-z0-9]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+\/=]+/ ||
         s ~ / (ssh-(rsa|ed25519|dss)|ecdsa-sha2-[a-z0-9]+) [A-Za-z0-9+\/=]+/
}
function readfile(how, path,    line, n, inblk, c, used, got, w) {
  if (how == "F") { n = path; sub(/.*\//, "", n); el("F " n) }
  while ((got = (getline line < path)) > 0) {
    if (how == "F") {
      if (line ~ /^-----BEGIN RSA PUBLIC KEY-----/) inblk = 1
      if (inblk && c < 64) { el("P " line); c++ }
      if (line ~ /^-----END RSA PUBLIC KEY-----/) inblk = 0
    } else if (how == "A") { if (sshkey(line)) el(line) }
    else if (how == "I") {
      if (line ~ /^[0-9.]+$/ || line ~ /^generation [0-9]+$/ || line ~ /^[A-Za-z0-9.-]+ root-[A-Za-z0-9.-]+\.pub$/) el(line)
    }
    else if (how == "K") {
      sub(/#.*/, "", line)
      if (line ~ /^[ \t]*HostnameKeys[ \t]*=/ && c < 16) { el(line); c++ }
    }
    else if (how == "R") {
      if (line ~ /^[ \t]*#/) continue
      sub(/#.*/, "", line)
      if (line ~ /^(domain|hostna|maxchild|outputdir|outputlevel|access|include|bindtointerface)/) { el("S " line); continue }
      split(line, w, /[ \t]+/)
      line = (w[1] != "" ? w[1] : w[2])
      if (line != "") el("H " line)
    }
    else if (how == "H") {
      if (line ~ /^CSYNC_PROBE_PROGRAM=v[0-9]+:sha256:[0-9a-f]+$/) el(line)
      if (++c >= 3) break
    }
    else if (how == "T") {
      if (used + length(line) + 1 > 4096) { el(substr(line, 1, 4096 - used)); break }
      el(line); used += length(line) + 1
    }
  }
  if (got < 0) err(section, "awk", 2, "cannot read " path)
  close(path)
}
inerr && !/^%%e$/ { emsg = emsg (emsg == "" ? "" : " / ") $0; next }
/^%%/ {
  op = substr($0, 3, 1); arg = substr($0, 5)
  if (op == "E") { inerr = 1; emsg = ""; split(arg, ew, " ") }
  else if (op == "e") { inerr = 0; err(ew[1], ew[2], ew[3], emsg) }
  else if (op == "C") section = arg
  else if (op == "J") { printf "%s", arg; first = (arg ~ /\[$/) }
  else if (op == "P") pfx = arg
  else if (op == "D") strip = arg
  else if (op == "S") el(arg)
  else if (op ~ /^[FAITKRH]$/) readfile(op, arg)
  next
}
{
  if (strip != "") { i = index($0, " " strip "/"); if (i) $0 = substr($0, 1, i) "." substr($0, i + 1 + length(strip)) }
  el(pfx $0)
}
END { printf ",\"errors\":[%s]}\n", errs }'
}

# Bounded: with BOUNDED=stdin (as csync runs it, the probe program included), csync keeps
# the session's standard input open until it has the answer, and it closes when csync gives
# up on the probe (its command timeout) or dies. The watcher then kills the probe's process
# group: a probe csync no longer waits for leaves nothing running on the host, whatever
# program hung. Only in an ssh session (SSH_CONNECTION, set by sshd), where that group is the
# session's own (sshd makes every session a process group of its own): run any other way,
# the group may be its caller's. It costs one subshell and no program (read and kill are
# built in). The probe's programs read /dev/null; only the watcher holds the session's input.
# The whole probe is this one group, the script's last command: a shell that reads the
# script from its standard input has read all of it before the watcher starts.
#
# Served (SERVE=1: csync watch, Session.serve in driver/transport.py): the session stays open
# and probes on request, so a warm cycle costs a request line, not a channel, a shell and
# this script. The server says "%%csync-ready" once it runs (csync sends nothing before:
# no request can be read as script); then each line "probe N" (N digits) gets "%%csync-got"
# at once (the host is alive: csync waits for it as long as for a channel to open), one
# probe's document on stdout followed by "\n%%csync-end N STATUS", and "\n%%csync-end N" on
# stderr (a document is one line: the awk writes no newline inside it). Any other line ends the
# server (exit 64). A forwarder holds the session's input and passes the requests on: when
# the input closes (csync closed the session, gave up on a probe or died) it kills the
# session's process group, as the watcher does, so a hung probe ends with it. Between
# requests the host runs three shells that wait on a read, and nothing else.
{
if [ "${SERVE-}" = 1 ]; then
  echo '%%csync-ready'
  exec 5>&1
  {
    while IFS= read -r csync_line; do echo '%%csync-got' >&5; printf '%s\n' "$csync_line"; done
    if [ "$BOUNDED" = stdin ] && [ -n "${SSH_CONNECTION-}" ]; then kill -KILL 0; fi
  } | while IFS= read -r csync_req; do
    csync_n=${csync_req#probe }
    case $csync_req in "probe "*) ;; *) exit 64 ;; esac
    case $csync_n in ''|*[!0-9]*) exit 64 ;; esac
    probe
    csync_rc=$?
    printf '\n%%%%csync-end %s %s\n' "$csync_n" "$csync_rc"
    printf '\n%%%%csync-end %s\n' "$csync_n" >&2
  done 5>&-
  exit
fi
if [ "$BOUNDED" = stdin ] && [ -n "${SSH_CONNECTION-}" ]; then
  exec 4<&0
  ( while read -r csync_line; do :; done; kill -KILL 0 ) <&4 >/dev/null 2>&1 &
  csync_watcher=$!
  exec 4<&-
fi
probe
rc=$?
[ -z "${csync_watcher-}" ] || kill "$csync_watcher" 2>/dev/null
exit $rc
}
