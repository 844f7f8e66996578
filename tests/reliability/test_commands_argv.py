"""Every remote command csync builds from a valid model parses back to exactly the argument
vector it means (hypothesis).

Commands travel as POSIX sh scripts on `/bin/sh` (commands.SHELL; it reads them from standard input); what makes them safe
is that every value becomes exactly one shell word. So the property is checked where the
words are made: for models built from generated values that the model accepts, each
builder's command lines are split back with shlex (and, for quote_argv itself, by a real
/bin/sh) and must equal the intended argv, whatever the values (metacharacters included,
where the model lets them through).
"""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.driver import commands

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])

# The model's own patterns, with lengths kept short so that most drawn models are valid
# (the model decides: a value it refuses is not drawn again).
labels = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
sg_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True)
paths = st.from_regex(r"(/[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,8}){1,4}", fullmatch=True)
octets = st.integers(1, 254)


@st.composite
def models(draw) -> DesiredState:
    """A cluster site from generated names, addresses and paths, if the model accepts it."""
    members = draw(st.lists(labels, min_size=1, max_size=4, unique_by=str.lower))
    clients = draw(st.lists(labels, min_size=0, max_size=4, unique_by=str.lower))
    assume(not {m.lower() for m in members} & {c.lower() for c in clients})
    addresses = draw(st.lists(st.tuples(octets, octets), min_size=len(members) + len(clients) + 1, max_size=len(members) + len(clients) + 1, unique=True))
    ip = [f"10.{a}.{b}.1" for a, b in addresses]
    data = {
        "version": 1,
        "site": draw(labels),
        "master": {
            "mode": "serviceguard",
            "cluster": draw(sg_names),
            "package": {"name": draw(sg_names), "address": ip[0], "mount": draw(paths), "node": members[0]},
            "members": [{"name": m, "address": ip[1 + i]} for i, m in enumerate(members)],
        },
        "clients": [{"name": c, "address": ip[1 + len(members) + i]} for i, c in enumerate(clients)],
        "paths": {"cfengine_dir": draw(paths), "dispatcher": draw(paths), "wizard": draw(paths), "package_files_dir": draw(paths)},
        "platform": {
            "serviceguard_path": ":".join(draw(st.lists(paths, min_size=1, max_size=3, unique=True))),
            "cfengine_path": ":".join(draw(st.lists(paths, min_size=1, max_size=3, unique=True))),
            "cmviewcl_format": draw(st.sampled_from(["auto", "line", "table"])),
        },
    }
    try:
        return DesiredState.model_validate(data)
    except ValidationError:
        assume(False)


def words(line: str) -> list[str]:
    return shlex.split(line, posix=True)


def commands_of(line: str) -> list[list[str]]:
    """A line of simple commands joined by && as lists of words (operators split off)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    out: list[list[str]] = [[]]
    for token in lex:
        if token == "&&":
            out.append([])
        else:
            out[-1].append(token)
    return out


@PROPERTY
@given(st.lists(st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))), max_size=6))
def test_quote_argv_is_read_back_by_shlex_and_by_sh_as_the_same_words(argv):
    line = commands.quote_argv(argv)
    assert words(line) == argv
    # and by a real POSIX shell: printf prints each word NUL-terminated
    done = subprocess.run(["/bin/sh", "-c", f"printf '%s\\0' {line}" if argv else "true"], capture_output=True)
    assert done.returncode == 0
    got = done.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1] if argv else []
    assert got == argv


@PROPERTY
@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))))
def test_a_shell_assignment_carries_its_value_verbatim(name, value):
    assert words(commands.assign(name, value)) == [f"{name}={value}"]


@PROPERTY
@given(models(), st.data())
def test_every_action_command_of_a_valid_model_is_the_intended_argv(state, data):
    pkg = state.master.package
    member = data.draw(st.sampled_from([m.name for m in state.members]))
    node = data.draw(st.sampled_from([m.name for m in state.members]))

    # Serviceguard: cmrunpkg -n NODE PKG && cmmodpkg -e PKG
    sg = state.platform.serviceguard_path
    start = commands.start_package(pkg.name, node, serviceguard_path=sg)
    assert words(start.script.splitlines()[0]) == [f"PATH={sg}:$PATH"]
    assert commands_of(start.script.splitlines()[1]) == [["cmrunpkg", "-n", node, pkg.name], ["cmmodpkg", "-e", pkg.name]]
    assert commands_of(commands.enable_switching(pkg.name, serviceguard_path=sg).script.splitlines()[1]) == [["cmmodpkg", "-e", pkg.name]]
    assert commands_of(commands.halt_package(pkg.name, serviceguard_path=sg).script.splitlines()[1]) == [["cmhaltpkg", pkg.name]]

    # DSAU tools
    dispatch = commands.dispatch_member(state, member).script.splitlines()
    assert words(dispatch[0].split(" || ")[0]) == ["[", "-d", f"{pkg.mount}/dsau/cfengine_master", "]"]
    assert words(dispatch[-1]) == [state.paths.dispatcher, dsau.DISPATCHER_MEMBER_ADDED, member]
    clients = [c.address for c in state.clients]
    if clients:
        members = [m.address for m in state.members]
        rotation = commands.regenerate_keys(state, clients, members).script.splitlines()
        assert words(rotation[-1]) == [state.paths.wizard, "regenerate-keys", *clients]
        loop = next(line for line in rotation if line.startswith("for t in "))
        assert words(loop.removeprefix("for t in ").removesuffix("; do")) == [*members, *clients]

    # key files: the key store line and the file operations
    ppkeys = f"{state.paths.cfengine_dir}/{dsau.PPKEYS_SUBDIR}"
    address = data.draw(st.sampled_from([h.address for h in state.all_hosts] + [pkg.address]))
    target = dsau.peer_key_name(address)
    remove = commands.remove_key(state, target).script.splitlines()
    assert words(remove[1]) == [f"d={ppkeys}"] and words(remove[-1]) == ["rm", "-f", "--", target]
    by_name = dsau.peer_key_name(member)  # a key file named by host name (cfrun looks it up first)
    assert words(commands.remove_key(state, by_name).script.splitlines()[-1]) == ["rm", "-f", "--", by_name]
    copy = commands.copy_key(state, dsau.OWN_PUBLIC_KEY, target).script.splitlines()
    assert words(copy[1]) == [f"d={ppkeys}"]
    assert commands_of(copy[-1].split(" || ")[0]) == [
        ["rm", "-f", f".csync.{target}.tmp"],
        ["cp", dsau.OWN_PUBLIC_KEY, f".csync.{target}.tmp"],
        ["chmod", "644", f".csync.{target}.tmp"],
        ["mv", "-f", f".csync.{target}.tmp", target],
    ]

    # the probe's parameters, one assignment each
    expected = [
        ("CF", state.paths.cfengine_dir),
        ("ROLE", "member"),
        ("MOUNT", pkg.mount),
        ("MDIR", dsau.PACKAGE_MASTER_DIR),
        ("MKEYS", dsau.PACKAGE_CLUSTER_KEY_DIR),
        ("OWNKEY", dsau.OWN_PUBLIC_KEY),
        ("PEERPFX", dsau.PEER_KEY_PREFIX),
        ("PEERSFX", dsau.PEER_KEY_SUFFIX),
        ("BOUNDED", "stdin"),
        ("MINPUTS", dsau.PACKAGE_MASTER_INPUTS),
        ("STATE", dsau.PACKAGE_CSYNC_STATE),
        ("PKGFILES", state.paths.package_files_dir),
        ("SGPATH", state.platform.serviceguard_path),
        ("SGFORMAT", state.platform.cmviewcl_format),
    ]
    header = commands.probe(state, "member").script.splitlines()[: len(expected)]
    assert [words(line) for line in header] == [[f"{k}={v}"] for k, v in expected]


PEM_BODY = st.lists(st.from_regex(r"[A-Za-z0-9+/]{1,64}", fullmatch=True), min_size=1, max_size=8)


@PROPERTY
@given(models(), PEM_BODY)
def test_an_installed_key_is_written_byte_for_byte(state, lines):
    pem = "-----BEGIN RSA PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END RSA PUBLIC KEY-----\n"
    target = dsau.peer_key_name(state.clients[0].address if state.clients else state.members[0].address)
    last = commands.install_key(state, target, pem, "SHA256:x").script.splitlines()
    # the printf's words span the PEM's lines: split the whole script after the key-store prelude
    body = "\n".join(last[last.index(next(x for x in last if x.startswith("rm -f .csync."))) :])
    lex = shlex.shlex(body.split(" || ")[0], posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    tokens = list(lex)
    at = tokens.index("printf")
    assert tokens[at : at + 5] == ["printf", "%s", pem, ">", f".csync.{target}.tmp"]


@pytest.mark.parametrize("value", ["$(reboot)", "`id`", "a;b", "a\nb", "' OR '1", "*", "~root", "a b", "-n", "\\"])
def test_values_the_model_refuses_are_refused_by_the_builders_too(value):
    # a forged plan carries values past the model: the builders check them again
    with pytest.raises(commands.UnsafeValue):
        commands.start_package(value, "node1", serviceguard_path="/usr/sbin")
    with pytest.raises(commands.UnsafeValue):
        commands.halt_package(value, serviceguard_path="/usr/sbin")
    # a search path (platform:) too: every builder that puts one in PATH
    with pytest.raises(commands.UnsafeValue):
        commands.start_package("csync", "node1", serviceguard_path=value)
    with pytest.raises(commands.UnsafeValue):
        commands.enable_switching("csync", serviceguard_path=f"/usr/sbin:{value}")
    with pytest.raises(commands.UnsafeValue):
        commands.cfagent_check("10.0.0.1", "/csync/dsau/cfengine_master/inputs/update.conf", cfengine_path=value)
    with pytest.raises(commands.UnsafeValue):
        commands.cfagent_check("10.0.0.1", value)  # the file the check copies goes into a cfengine input file
    with pytest.raises(commands.UnsafeValue):
        commands.regenerate_keys(
            DesiredState.model_validate({"version": 1, "site": "s", "master": {"mode": "standalone", "host": {"name": "m", "address": "10.0.0.1"}}}),
            [value],
            [],
        )
