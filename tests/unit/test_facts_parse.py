"""Pure parsing of probe answers: malformed, truncated and partial output."""

from __future__ import annotations

import json

import pytest

from reconciler.observe.facts import (
    mode_from_ls,
    parse_key_listing,
    parse_probe,
    parse_ssh_key_line,
)
from tests.keys import fp, public

GOOD = {
    "format": 1,
    "hostname": ["web1"],
    "cf": {"dir": "dir", "ppkeys": "dir", "inputs": "dir"},
    "keys": ["L -rw-r--r-- 1 0 0 251 Nov 25 07:51 root-10.0.0.1.pub", "F root-10.0.0.1.pub"],
    "inputs": ["1 2 ./a"],
    "ssh": {"public": [], "authorized": []},
    "errors": [],
}


def doc(**changes) -> bytes:
    d = dict(GOOD, **changes)
    return json.dumps(d).encode()


def test_a_good_answer_parses():
    d = dict(GOOD)
    d["keys"] = GOOD["keys"] + ["P " + line for line in public("k").splitlines()]
    facts = parse_probe("web1", "10.0.0.21", "client", json.dumps(d).encode(), 0)
    assert facts.reachable and facts.hostname == "web1"
    assert facts.peer_key("10.0.0.1").fingerprint == fp("k")


@pytest.mark.parametrize(
    "stdout, why",
    [
        (b"", "not JSON"),
        (b"garbage", "not JSON"),
        (doc()[:-40], "not JSON"),
        (json.dumps([1, 2]).encode(), "not a csync probe document"),
        (doc(format=2), "not a csync probe document"),
        (doc(cf="dir"), "section 'cf'"),
        (doc(keys="x"), "section 'keys'"),
        (doc(keys=[1, 2]), "section 'keys'"),
    ],
)
def test_malformed_answers_become_unreachable_facts_with_the_reason(stdout, why):
    facts = parse_probe("web1", "10.0.0.21", "client", stdout, 0)
    assert not facts.reachable and facts.reason_kind == "probe"
    assert why in facts.reason


def test_a_failed_probe_says_how_it_failed():
    facts = parse_probe("web1", "10.0.0.21", "client", b"", 127, b"sh: awk: not found\n")
    assert not facts.reachable and "exited 127" in facts.reason and "awk: not found" in facts.reason


def test_a_truncated_key_block_is_not_a_key():
    d = dict(GOOD)
    d["keys"] = GOOD["keys"] + ["P " + line for line in public("k").splitlines()[:-1]]
    key = parse_probe("w", "10.0.0.21", "client", json.dumps(d).encode(), 0).peer_key("10.0.0.1")
    assert key.fingerprint is None and "truncated" in key.problem


def test_a_name_listed_twice_is_distrusted():
    d = dict(GOOD)
    d["keys"] = [GOOD["keys"][0], GOOD["keys"][0], "F root-10.0.0.1.pub"] + ["P " + line for line in public("k").splitlines()]
    key = parse_probe("w", "10.0.0.21", "client", json.dumps(d).encode(), 0).peer_key("10.0.0.1")
    assert not key.usable and "twice" in key.problem


@pytest.mark.parametrize("text, mode", [("-rw-r--r--", 0o644), ("-rw-------+", 0o600), ("-rwxrwxrwx", 0o777), ("drwx------", 0o700), ("x", None)])
def test_mode_strings(text, mode):
    assert mode_from_ls(text) == mode


def test_ssh_key_lines_with_options_and_comments():
    k = parse_ssh_key_line('from="10.0.0.1" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@n1')
    assert k.type == "ssh-ed25519" and k.fingerprint.startswith("SHA256:")
    assert k.line.startswith("ssh-ed25519 AAAA") and "root@n1" not in k.line
    assert parse_ssh_key_line("root:x:0:0") is None


def test_equal_key_files_of_one_run_are_one_object_and_unequal_ones_are_not():
    def listing(mode: str, label: str) -> list[str]:
        pem = public(label).strip().splitlines()
        return [f"L {mode} 1 0 0 251 Nov 25 09:24 root-10.0.0.1.pub", "F root-10.0.0.1.pub", *[f"P {p}" for p in pem]]

    shared: dict = {}
    a = parse_key_listing(listing("-rw-r--r--", "cluster"), shared)["root-10.0.0.1.pub"]
    b = parse_key_listing(listing("-rw-r--r--", "cluster"), shared)["root-10.0.0.1.pub"]
    other_mode = parse_key_listing(listing("-rw-rw-rw-", "cluster"), shared)["root-10.0.0.1.pub"]
    other_key = parse_key_listing(listing("-rw-r--r--", "other"), shared)["root-10.0.0.1.pub"]
    assert a is b and a.fingerprint == fp("cluster")
    assert other_mode is not a and other_mode.mode == 0o666
    assert other_key is not a and other_key.fingerprint == fp("other")
    unshared = parse_key_listing(listing("-rw-r--r--", "cluster"))["root-10.0.0.1.pub"]
    assert unshared == a and unshared is not a
