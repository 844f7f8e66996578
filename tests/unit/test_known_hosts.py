"""The transport's known_hosts index answers what paramiko's HostKeys answers, in one pass.

paramiko's lookup and load compare a name with every entry (quadratic: seconds of CPU at
2,000 hosts); KnownHosts parses the lines as paramiko does and indexes them."""

from __future__ import annotations

import base64
import time

import paramiko

from reconciler.driver.transport import KnownHosts
from reconciler.lab.keys import ssh_ed25519


def public(comment: str) -> str:
    """``type base64`` of a fresh ed25519 key."""
    kind, blob, _ = ssh_ed25519(comment)[1].decode().split(" ", 2)
    return f"{kind} {blob}"


def test_the_index_agrees_with_paramiko_for_plain_bracketed_hashed_and_repeated_names(tmp_path):
    a, b, c, d = (public(x) for x in "abcd")
    hashed = paramiko.HostKeys.hash_host("10.0.0.3")
    lines = [
        "# a comment",
        "",
        f"10.0.0.1 {a}",
        f"10.0.0.1 {b}",  # the same name and type again: the first wins
        f"[10.0.0.2]:2222,node2 {c}",
        f"{hashed} {d}",
    ]
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    theirs = paramiko.HostKeys()
    theirs.load(str(path))
    # lines that are no key csync reads (a marker line, bad base64): paramiko's load raises
    # InvalidHostKey on them (once an internal error of csync's); the index skips them
    path.write_text("\n".join(lines) + f"\n@cert-authority *.example {a}\n10.0.0.9 ssh-ed25519 not-base64!\n")
    ours = KnownHosts(path, "strict")
    for name in ("10.0.0.1", "[10.0.0.2]:2222", "node2", "10.0.0.2", "10.0.0.3", "10.0.0.9", "10.0.0.4"):
        found = theirs.lookup(name)
        expected = {t: k.get_base64() for t, k in dict(found).items()} if found else {}
        assert {t: k.get_base64() for t, k in ours.entries_for(name).items()} == expected, name
    assert ours.entries_for("10.0.0.3")  # the hashed entry is found by its name


def test_a_recorded_key_is_found_and_appended(tmp_path):
    path = tmp_path / "known_hosts"
    known = KnownHosts(path, "accept-new")
    pub = public("e")
    key = paramiko.PKey.from_type_string(pub.split()[0], base64.b64decode(pub.split()[1]))
    known.record("[10.0.0.5]:22002", key)
    assert known.entries_for("[10.0.0.5]:22002")["ssh-ed25519"].get_base64() == key.get_base64()
    assert KnownHosts(path, "strict").entries_for("[10.0.0.5]:22002")


def test_two_thousand_hosts_load_and_look_up_in_linear_time(tmp_path):
    pub = public("f")
    path = tmp_path / "known_hosts"
    names = [f"[127.0.{10 + i // 250}.{i % 250 + 1}]:22002" for i in range(2000)]
    path.write_text("".join(f"{n} {pub}\n" for n in names))
    start = time.process_time()
    known = KnownHosts(path, "strict")
    assert all(known.entries_for(n) for n in names)
    assert time.process_time() - start < 1.0  # paramiko's HostKeys: about 0.7 s CPU here for the same, quadratic
