"""The loader: each rule reported as one exact `file:line:col: path: message` line, every
problem of a run at once, files merged with clients concatenated."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired.loader import (
    MAX_FILE_BYTES,
    DesiredStateInvalid,
    Diagnostic,
    load_access_file,
    load_desired_state,
)
from reconciler.desired.model import Platform
from reconciler.domain import dsau
from reconciler.errors import ExitCode, InvalidInput

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests/data/desired"

# Line numbers in the expectations below count from this document's first line.
BASE = """\
version: 1
site: lab
master:
  mode: serviceguard
  cluster: c1
  package: {name: csync, address: 10.0.0.10, mount: /csync, node: node1}
  members:
    - {name: node1, address: 10.0.0.1}
    - {name: node2, address: 10.0.0.2}
clients:
  - {name: web1, address: 10.0.0.21}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Files are given by relative paths, as an admin types them: messages keep them so."""
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str | bytes) -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def problems(*files: tuple[str, str | bytes], paths: list[str] | None = None) -> list[str]:
    for name, text in files:
        write(name, text)
    with pytest.raises(DesiredStateInvalid) as caught:
        load_desired_state(paths or [name for name, _ in files])
    return [str(d) for d in caught.value.diagnostics]


def client(line: str) -> tuple[str, str]:
    """BASE with one more client line (line 12)."""
    return ("site.yaml", BASE + line + "\n")


# --- values ------------------------------------------------------------------------------


def test_bad_ipv4_address():
    assert problems(client("  - {name: web2, address: 10.0.0.300}")) == ["site.yaml:12:27: clients[1].address: '10.0.0.300' is not an IPv4 address"]


@pytest.mark.parametrize(
    "address, message",
    [
        ("10.0.0.021", "'10.0.0.021' has a leading zero, which some tools read as octal; write 10.0.0.21"),
        ("0.0.0.0", "0.0.0.0 means 'any address'; give the host's own address"),
        ("255.255.255.255", "255.255.255.255 is the broadcast address; give the host's own address"),
        ("224.0.0.5", "224.0.0.5 is a multicast address; give the host's own address"),
        ("10.0.0", "'10.0.0' is not an IPv4 address"),
        ("'::1'", "'::1' is not an IPv4 address"),
    ],
)
def test_addresses_that_are_not_a_hosts_own_ipv4_address(address, message):
    assert problems(client(f"  - {{name: web2, address: {address}}}")) == [f"site.yaml:12:27: clients[1].address: {message}"]


@pytest.mark.parametrize(
    "yaml_name, shown, why",
    [
        ('"web1;rm -rf /"', "'web1;rm -rf /'", "';' is not allowed; use letters, digits and '-' (RFC 1123)"),
        ('"web\\nx"', "'web\\nx'", "'\\n' (a control character) is not allowed; use letters, digits and '-' (RFC 1123)"),
        ('"w\u0435b1"', "'w\\u0435b1'", "'\\u0435' (CYRILLIC SMALL LETTER IE) is not allowed; use letters, digits and '-' (RFC 1123)"),
        ('"../etc"', "'../etc'", "give the unqualified name, without the domain ('.' is not allowed)"),
        ("web1.example.com", "'web1.example.com'", "give the unqualified name, without the domain ('.' is not allowed)"),
        ("-web", "'-web'", "it must not start or end with '-' (RFC 1123)"),
        ("a" * 64, "'" + "a" * 64 + "'", "it is 64 characters long; the limit is 63 (RFC 1123)"),
    ],
)
def test_host_names_a_shell_a_path_or_an_eye_could_misread_are_refused(yaml_name, shown, why):
    assert problems(client(f"  - name: {yaml_name}\n    address: 10.0.0.22")) == [
        f"site.yaml:12:11: clients[1].name: {shown} is not a valid unqualified host name: {why}"
    ]


def test_a_key_with_a_newline_is_shown_escaped_on_one_line():
    # found by tests/test_loader_fuzz.py: the field path printed the raw key, breaking the line
    (problem,) = problems(("site.yaml", BASE + 'access:\n  hosts:\n    "we\\nb": {port: 22}\n'))
    assert "\n" not in problem
    assert problem.startswith("site.yaml:14:5: access.hosts.'we\\nb': ")


def test_a_host_name_must_be_text():
    assert problems(client("  - {name: 42, address: 10.0.0.22}")) == [
        "site.yaml:12:12: clients[1].name: expected text, found the number 42; put it in quotes if it is meant as text"
    ]


def test_path_traversal_in_the_mount_point_is_refused():
    assert problems(("site.yaml", BASE.replace("mount: /csync", "mount: /csync/../etc"))) == [
        "site.yaml:6:53: master.package.mount: '/csync/../etc' contains a '.' or '..' component; write the directory it means"
    ]


@pytest.mark.parametrize(
    "mount, message",
    [
        ("/", "'/' cannot be the package's mount point; use a directory of its own, such as /csync"),
        ("/etc/csync", "'/etc/csync' is in /etc, which belongs to the system or DSAU; mount the package filesystem on a directory of its own, such as /csync"),
        (
            "/var/opt/dsau",
            "'/var/opt/dsau' is in /var/opt/dsau, which belongs to the system or DSAU; mount the package filesystem on a directory of its own, such as /csync",
        ),
        ("/csync/", "'/csync/' ends with '/'; write '/csync'"),
        ("//csync", "'//csync' contains '//'; separate directories with a single '/'"),
        ("csync", "'csync' is not an absolute path; it must start with '/'"),
        ("'/csync;reboot'", "'/csync;reboot': ';' is not allowed in a path; use letters, digits, '_', '.', '+', '-' and '/'"),
        ("'/my csync'", "'/my csync': ' ' is not allowed in a path; use letters, digits, '_', '.', '+', '-' and '/'"),
    ],
)
def test_mount_point_rules(mount, message):
    assert problems(("site.yaml", BASE.replace("mount: /csync", f"mount: {mount}"))) == [f"site.yaml:6:53: master.package.mount: {message}"]


@pytest.mark.parametrize(
    "value, message",
    [
        ("usr/sbin", "directory 1 of the search path: 'usr/sbin' is not an absolute path; it must start with '/'"),
        (
            "'/usr/sbin:/opt/sg;reboot'",
            "directory 2 of the search path: '/opt/sg;reboot': ';' is not allowed in a path; use letters, digits, '_', '.', '+', '-' and '/'",
        ),
        ("'/usr/sbin:$HOME/bin'", "directory 2 of the search path: '$HOME/bin' is not an absolute path; it must start with '/'"),
        (
            "'/usr/sbin::/opt/cmcluster/bin'",
            "'/usr/sbin::/opt/cmcluster/bin' has an empty directory (directory 2): an empty entry means the current directory; remove it",
        ),
        ("'/usr/sbin:'", "'/usr/sbin:' has an empty directory (directory 2): an empty entry means the current directory; remove it"),
        ("'/usr/sbin:/usr/sbin'", "'/usr/sbin:/usr/sbin' lists /usr/sbin twice"),
        ("'/opt/sg/../bin'", "directory 1 of the search path: '/opt/sg/../bin' contains a '.' or '..' component; write the directory it means"),
        ("''", "the search path is empty; give one or more absolute directories joined by ':'"),
        ("[/usr/sbin]", "expected text, found a list"),
    ],
)
def test_platform_search_paths_are_absolute_directories_and_nothing_else(value, message):
    got = problems(("site.yaml", BASE + f"platform:\n  cfengine_path: /opt/dsau/sbin\n  serviceguard_path: {value}\n"))
    assert got == [f"site.yaml:14:22: platform.serviceguard_path: {message}"]


def test_platform_cmviewcl_format_lists_the_choices_and_unknown_fields_are_named():
    assert problems(("site.yaml", BASE + "platform: {cmviewcl_format: xml, sg_path: /usr/sbin}\n")) == [
        "site.yaml:12:29: platform.cmviewcl_format: 'xml' is not allowed; must be one of: auto, line, table",
        "site.yaml:12:34: platform: unknown field 'sg_path'; did you mean 'cfengine_path'?",
    ]


def test_a_platform_section_loads_and_counts_in_the_digest_only_when_it_is_not_the_default():
    base = load_desired_state([write("base.yaml", BASE)])
    same = load_desired_state([write("same.yaml", BASE + f"platform: {{serviceguard_path: '{dsau.SERVICEGUARD_PATH}', cmviewcl_format: auto}}\n")])
    linux = load_desired_state([write("linux.yaml", BASE + "platform: {serviceguard_path: /usr/local/cmcluster/bin, cmviewcl_format: table}\n")])
    assert base.platform == Platform() and same.digest() == base.digest()
    assert linux.platform.serviceguard_path == "/usr/local/cmcluster/bin" and linux.platform.cfengine_path == dsau.CFENGINE_PATH
    assert linux.platform.cmviewcl_format == "table" and linux.digest() != base.digest()


def test_wrong_choice_lists_the_choices():
    assert problems(("site.yaml", BASE + "keys: {distribution: cpy}\n")) == [
        "site.yaml:12:22: keys.distribution: 'cpy' is not allowed; must be one of: copy, regenerate"
    ]


def test_wrong_master_mode_lists_the_modes():
    assert problems(("site.yaml", BASE.replace("mode: serviceguard", "mode: cluster"))) == [
        "site.yaml:4:9: master.mode: 'cluster' is not allowed; must be one of: serviceguard, standalone"
    ]


def test_missing_master_mode_points_at_the_master():
    assert problems(("site.yaml", BASE.replace("  mode: serviceguard\n", ""))) == [
        "site.yaml:4:3: master.mode: required field is missing; it must be one of: serviceguard, standalone"
    ]


def test_missing_required_field_points_at_its_mapping():
    assert problems(client("  - name: web2\n    port: 22")) == [
        "site.yaml:12:5: clients[1].address: required field is missing",
        "site.yaml:13:5: clients[1]: unknown field 'port'; the fields here are: name, address",
    ]


def test_missing_top_level_field_points_at_the_file():
    assert problems(("site.yaml", "# just a start\nversion: 1\n")) == [
        "site.yaml:2:1: master: required field is missing",
        "site.yaml:2:1: site: required field is missing",
    ]


def test_unknown_field_suggests_the_closest_and_is_not_also_missing():
    assert problems(client("  - {name: web2, adress: 10.0.0.22}")) == ["site.yaml:12:18: clients[1]: unknown field 'adress'; did you mean 'address'?"]


def test_unknown_top_level_field_suggests_the_closest():
    assert problems(("site.yaml", BASE + "acess: {user: root}\n")) == ["site.yaml:12:1: unknown field 'acess'; did you mean 'access'?"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("access: {port: '22'}", "site.yaml:12:16: access.port: expected a whole number, found the text '22'; remove the quotes"),
        ("access: {port: 70000}", "site.yaml:12:16: access.port: 70000 is too large; it must be at most 65535"),
        ("access: {connect_timeout: 0}", "site.yaml:12:27: access.connect_timeout: 0 is too small; it must be greater than 0"),
        ("access: {command_timeout: .inf}", "site.yaml:12:27: access.command_timeout: inf is not a finite number"),
        ("access: {parallelism: 2.5}", "site.yaml:12:23: access.parallelism: expected a whole number, found the number 2.5"),
        (
            "access: {user: 'Root Admin'}",
            "site.yaml:12:16: access.user: 'Root Admin' is not a valid user name: ' ' is not allowed; use letters, digits, '_', '.' and '-'",
        ),
        ("access: {host_key_policy: yes}", "site.yaml:12:27: access.host_key_policy: 'yes' is not allowed; must be one of: strict, accept-new"),
        (
            "keys: {prune: yes}",
            "site.yaml:12:15: keys.prune: expected true or false, found the text 'yes'; write true or false (YAML 1.2 reads yes, no, on, off as text)",
        ),
        ("keys: [copy]", "site.yaml:12:7: keys: expected a mapping ('field: value' lines), found a list"),
    ],
)
def test_values_are_taken_as_written_not_coerced(line, message):
    assert problems(("site.yaml", BASE + line + "\n")) == [message]


@pytest.mark.parametrize(
    "version, message",
    [
        ("2", "2 is not allowed; must be one of: 1"),
        ("true", "true is not a format version; write 1"),
        ("'1'", "'1' is not a format version; write 1"),
    ],
)
def test_version_must_be_1(version, message):
    assert problems(("site.yaml", BASE.replace("version: 1", f"version: {version}"))) == [f"site.yaml:1:10: version: {message}"]


def test_empty_members_list():
    text = BASE.replace("    - {name: node1, address: 10.0.0.1}\n    - {name: node2, address: 10.0.0.2}\n", "").replace("members:", "members: []")
    assert problems(("site.yaml", text.replace(", node: node1", ""))) == ["site.yaml:7:12: master.members: at least 1 entry is required, found 0"]


# --- cross-field rules --------------------------------------------------------------------


def test_duplicate_address_points_at_the_second_and_names_the_first():
    assert problems(client("  - {name: web2, address: 10.0.0.21}")) == [
        "site.yaml:12:27: clients[1].address: 10.0.0.21 is already the address of client web1 (site.yaml:11:27)"
    ]


def test_the_package_address_is_nobody_elses():
    assert problems(client("  - {name: web2, address: 10.0.0.10}")) == [
        "site.yaml:12:27: clients[1].address: 10.0.0.10 is already the address of package csync (site.yaml:6:35)"
    ]


def test_duplicate_name_across_files_ignores_case_and_names_the_first():
    assert problems(("a.yaml", BASE), ("b.yaml", "clients:\n  - {name: NODE2, address: 10.0.0.22}\n"), paths=["."]) == [
        "b.yaml:2:12: clients[1].name: NODE2 is already the name of member node2 (a.yaml:9:14); host names must be unique, ignoring case"
    ]


def test_preferred_node_must_be_a_member():
    assert problems(("site.yaml", BASE.replace("node: node1", "node: node9"))) == [
        "site.yaml:6:67: master.package.node: node9 is not a member of the cluster; the members are: node1, node2"
    ]


def test_preferred_node_differing_in_case_suggests_the_member():
    assert problems(("site.yaml", BASE.replace("node: node1", "node: Node1"))) == [
        "site.yaml:6:67: master.package.node: Node1 is not a member of the cluster; did you mean node1?"
    ]


def test_access_overrides_name_declared_hosts():
    assert problems(("site.yaml", BASE + "access:\n  hosts:\n    web9: {port: 2222}\n")) == [
        "site.yaml:14:5: access.hosts.web9: web9 is not a declared host; overrides apply to declared members, masters and clients"
    ]


def test_every_problem_is_reported_in_one_run():
    text = BASE.replace("cluster: c1", "cluster: c 1").replace("10.0.0.2}", "10.0.0.1}") + "  - {name: web2, adress: 10.0.0.22}\nkeys: {prune: maybe}\n"
    assert problems(("site.yaml", text)) == [
        "site.yaml:5:12: master.cluster: 'c 1' is not a valid Serviceguard name: ' ' is not allowed; use letters, digits, '_', '.' and '-'",
        "site.yaml:9:30: master.members[1].address: 10.0.0.1 is already the address of member node1 (site.yaml:8:30)",
        "site.yaml:12:18: clients[1]: unknown field 'adress'; did you mean 'address'?",
        "site.yaml:13:15: keys.prune: expected true or false, found the text 'maybe'; write true or false (YAML 1.2 reads yes, no, on, off as text)",
    ]


# --- files and merging --------------------------------------------------------------------


def test_a_key_set_in_two_files_names_both_places():
    assert problems(("a.yaml", BASE), ("b.yaml", "# more\nsite: other\n"), paths=["."]) == ["b.yaml:2:1: site: also set in a.yaml:2:1; set it in one file"]


def test_clients_of_several_files_are_one_list_indexed_across_files():
    assert problems(("a.yaml", BASE), ("b.yaml", "clients:\n  - {name: web9, address: 10.0.0.300}\n"), paths=["."]) == [
        "b.yaml:2:27: clients[1].address: '10.0.0.300' is not an IPv4 address"
    ]


def test_a_directory_contributes_its_yaml_and_yml_files_in_name_order_not_recursively():
    state = load_desired_state([DATA / "split"])
    assert [c.name for c in state.clients] == ["a1", "a2", "s1", "z1"]


def test_a_file_named_twice_is_read_once():
    assert load_desired_state([DATA / "split", DATA / "split/site.yaml"]).site == "split"


def test_a_missing_path_is_named():
    write("site.yaml", BASE)
    with pytest.raises(DesiredStateInvalid) as caught:
        load_desired_state(["site.yaml", "clients.yaml"])
    assert [str(d) for d in caught.value.diagnostics] == ["clients.yaml: no such file or directory"]


def test_a_directory_without_yaml_files_is_an_error():
    Path("empty").mkdir()
    with pytest.raises(DesiredStateInvalid) as caught:
        load_desired_state(["empty"])
    assert str(caught.value) == "empty: the directory has no *.yaml or *.yml files"


# --- YAML itself ----------------------------------------------------------------------------


def test_duplicate_yaml_key_names_the_first():
    assert problems(("site.yaml", BASE + "site: other\n")) == ["site.yaml:12:1: site: duplicate key: it is already set at line 2; keep one"]


def test_duplicate_key_in_a_nested_mapping():
    assert problems(client("  - {name: web2, address: 10.0.0.22, name: web3}")) == [
        "site.yaml:12:38: clients[1].name: duplicate key: it is already set at line 12; keep one"
    ]


def test_an_alias_bomb_is_refused_before_anything_expands():
    bomb = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 12))
    text = "l0: &l0 [lol]\n" + bomb  # 9**11 leaves if expanded
    result = problems(("bomb.yaml", text))
    assert len(result) == 12
    assert result[0] == "bomb.yaml:1:5: l0: YAML anchors and aliases are not allowed (&l0, *l0); write the value out"


def test_an_anchor_alone_is_refused():
    assert problems(("site.yaml", BASE.replace("cluster: c1", "cluster: &c c1"))) == [
        "site.yaml:5:12: master.cluster: YAML anchors and aliases are not allowed (&c, *c); write the value out"
    ]


def test_yaml_tags_are_refused():
    assert problems(("site.yaml", BASE.replace("site: lab", "site: !!binary bGFi"))) == [
        "site.yaml:2:7: site: the YAML tag !!binary is not allowed; write a plain value"
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "t.yaml:1:1: the file is empty; a desired-state file is a mapping of fields, such as 'version: 1'"),
        ("# only a comment\n", "t.yaml:1:1: the file is empty; a desired-state file is a mapping of fields, such as 'version: 1'"),
        ("- version: 1\n", "t.yaml:1:1: the top level is a list; it must be a mapping of fields (version, site, master, ...)"),
        ("lab\n", "t.yaml:1:1: the top level is a single value; it must be a mapping of fields (version, site, master, ...)"),
        ("version: 1\nsite: [lab,\n", "t.yaml:3:1: invalid YAML: expected the node content, but found '<stream end>' (while parsing a flow node)"),
        ("version: 1\n  site: lab\n", "t.yaml:2:7: invalid YAML: mapping values are not allowed here"),
        ("version: 1\n\tsite: lab\n", "t.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token (while scanning for the next token)"),
        ("version: 1\nsite: l\x07b\n", "t.yaml:2:8: invalid YAML: the character '\\x07' is not allowed in YAML text; remove it"),
        ("version: 1\n---\nsite: lab\n", "t.yaml:3:1: more than one YAML document: a second one starts here; write one document per file (remove the '---')"),
        (b"version: 1\nsite: l\xffb\n", "t.yaml:2:8: the file is not UTF-8 text (byte 0xff); save it as UTF-8"),
        ("site: " + "[" * 3000 + "]" * 3000 + "\n", "t.yaml:1:1: invalid YAML: nested too deeply (a desired state is at most 32 levels deep)"),
        ("? [a, b]\n: 1\n", "t.yaml:1:3: a key must be a field name; a list or mapping cannot be a key"),
    ],
)
def test_files_that_are_not_a_yaml_mapping(text, message):
    assert problems(("t.yaml", text)) == [message]


def test_a_file_over_1_mib_is_refused_unread():
    assert problems(("big.yaml", "#" * MAX_FILE_BYTES + "\n")) == [
        "big.yaml:1:1: the file is larger than 1048576 bytes (1 MiB), the limit for a desired-state file"
    ]


def test_yaml_problems_are_reported_for_every_file_before_fields():
    assert problems(("a.yaml", "version: 1\nversion: 1\n"), ("b.yaml", "- x\n"), paths=["."]) == [
        "a.yaml:2:1: version: duplicate key: it is already set at line 1; keep one",
        "b.yaml:1:1: the top level is a list; it must be a mapping of fields (version, site, master, ...)",
    ]


# --- the exception ------------------------------------------------------------------------


def test_the_error_is_an_invalid_input_whose_text_is_every_line():
    with pytest.raises(InvalidInput) as caught:
        load_desired_state([write("site.yaml", BASE + "keys: {prune: 1, cfrun: some}\n")])
    error = caught.value
    assert isinstance(error, DesiredStateInvalid) and error.exit_code == ExitCode.INVALID
    assert str(error) == "\n".join(str(d) for d in error.diagnostics) and len(error.diagnostics) == 2
    assert error.diagnostics[0] == Diagnostic("site.yaml", 12, 15, "keys.prune", "expected true or false, found the number 1")


# --- valid states -------------------------------------------------------------------------


def test_the_example_site_is_valid():
    state = load_desired_state([ROOT / "desired-state/example"])
    assert (state.site, state.is_cluster, len(state.members), len(state.clients)) == ("plant-north", True, 3, 8)
    assert state.master.package.node == "hpnode1"


def test_a_standalone_site_is_valid():
    state = load_desired_state([DATA / "standalone.yaml"])
    assert not state.is_cluster and [h.name for h in state.all_hosts] == ["cfmaster", "till1", "till2"]


def test_relative_key_paths_are_relative_to_the_file_that_declares_them():
    access = load_desired_state([DATA / "standalone.yaml"]).access
    assert access.identity_file == str(DATA / "keys/id_ed25519")
    assert access.for_host("till2").identity_file == "~/.ssh/till2"  # '~' is kept until use
    assert access.known_hosts == "/etc/ssh/ssh_known_hosts"


def test_relative_key_paths_stay_relative_when_the_file_was_given_relative():
    write("sites/north.yaml", BASE + "access: {identity_file: keys/csync}\n")
    assert load_desired_state(["sites/north.yaml"]).access.identity_file == "sites/keys/csync"


def test_the_digest_does_not_depend_on_access_or_on_how_files_are_split():
    whole = load_desired_state([write("whole.yaml", BASE + "  - {name: web2, address: 10.0.0.22}\n")])
    write("split/a.yaml", BASE + "access: {user: admin, port: 2222, identity_file: k}\n")
    write("split/b.yaml", "clients:\n  - {name: web2, address: 10.0.0.22}\n")
    split = load_desired_state(["split"])
    assert whole.digest() == split.digest() and whole.access != split.access


# --- load_access_file -------------------------------------------------------------------


def test_access_file_reads_only_the_access_section():
    path = write("lab/desired.yaml", "site: [not, checked]\naccess:\n  identity_file: admin/id\n  connect_timeout: 5\n")
    access = load_access_file(path)
    assert (access.identity_file, access.connect_timeout, access.user) == ("lab/admin/id", 5, "root")


def test_access_file_without_access_gives_the_defaults():
    assert load_access_file(write("a.yaml", "version: 1\n")).user == "root"


def test_access_file_problems_have_the_same_diagnostics():
    with pytest.raises(DesiredStateInvalid) as caught:
        load_access_file(write("a.yaml", "access:\n  prot: 22\n  hosts:\n    'bad name': {port: 0}\n"))
    assert [str(d) for d in caught.value.diagnostics] == [
        "a.yaml:2:3: access: unknown field 'prot'; did you mean 'port'?",
        "a.yaml:4:5: access.hosts.bad name: 'bad name' is not a valid unqualified host name: ' ' is not allowed; use letters, digits and '-' (RFC 1123)",
        "a.yaml:4:24: access.hosts.bad name.port: 0 is too small; it must be at least 1",
    ]


def test_access_file_that_does_not_exist():
    with pytest.raises(DesiredStateInvalid) as caught:
        load_access_file("nowhere.yaml")
    assert str(caught.value) == "nowhere.yaml: cannot read the file: No such file or directory"
