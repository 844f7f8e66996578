"""csync import's pure parts: the discovery output, the access written, the round-trip merge."""

from __future__ import annotations

from reconciler.desired.model import Access, Platform
from reconciler.driver.discovery import parse_discovery
from reconciler.importer import discover as importer
from reconciler.importer import document

DISCOVERY = """@hostname
node2.lab.example
@cmviewcl
name=c1
node:node1|status=up
@rc 0
@package-files
package_name csync
ip_address 10.0.0.10
fs_directory /csync
@hosts

10.0.0.1 node1.lab.example node1
10.0.0.2 node2
::1 localhost
@standalone
@end
"""


def test_the_discovery_output_is_parsed_by_section():
    d = parse_discovery(DISCOVERY)
    assert d.complete and d.cmviewcl_rc == 0 and d.cmviewcl == ["name=c1", "node:node1|status=up"]
    assert dict(d.package_files) == {"package_name": "csync", "ip_address": "10.0.0.10", "fs_directory": "/csync"}
    assert d.etc_hosts == {"node1.lab.example": "10.0.0.1", "node1": "10.0.0.1", "node2": "10.0.0.2"}
    assert importer.short_name(d.hostname) == "node2" and not d.standalone
    assert not parse_discovery(DISCOVERY.replace("@end\n", "")).complete  # a cut-off answer


def test_access_paths_are_written_relative_to_the_output_file(tmp_path):
    access = Access.model_validate({"identity_file": str(tmp_path / "keys" / "id"), "known_hosts": "~/.ssh/kh", "port": 2222, "connect_timeout": 5.0})
    data = document.access_data(access, None, tmp_path / "site")
    assert data == {"identity_file": "../keys/id", "known_hosts": "~/.ssh/kh", "port": 2222, "connect_timeout": 5}
    assert document.access_data(access, None, None)["identity_file"] == str(tmp_path / "keys" / "id")


EXISTING = """\
# our site
version: 1
site: prod   # production
master:
  mode: serviceguard
  cluster: c1
  package: {name: csync, address: 10.0.0.10, mount: /csync, node: node1}
  members:
    - {name: node1, address: 10.0.0.1}  # rack A
    - {name: old, address: 10.0.0.9}
clients:
  - {name: web1, address: 10.0.1.99}  # front
keys: {distribution: regenerate, cfrun: all-members, prune: true}
"""


def test_merging_keeps_comments_order_and_choices_and_follows_the_site():
    found = importer.Found(
        {
            "version": 1,
            "site": "c1",
            "master": {
                "mode": "serviceguard",
                "cluster": "c1",
                "package": {"name": "csync", "address": "10.0.0.10", "mount": "/srv/csync", "node": "node1"},
                "members": [{"name": "node1", "address": "10.0.0.1"}, {"name": "node2", "address": "10.0.0.2"}],
            },
            "clients": [{"name": "web1", "address": "10.0.1.1"}, {"name": "db1", "address": "10.0.1.2"}],
            "keys": {"distribution": "copy", "cfrun": "none", "prune": False},
        },
        [],
    )
    doc = document.read_existing_text(EXISTING)
    out = document.dump(document.merge_document(doc, found, None))
    assert (
        out
        == """\
# our site
version: 1
site: prod   # production
master:
  mode: serviceguard
  cluster: c1
  package: {name: csync, address: 10.0.0.10, mount: /srv/csync, node: node1}
  members:
    - {name: node1, address: 10.0.0.1}  # rack A
    - {name: node2, address: 10.0.0.2}
clients:
  - {name: web1, address: 10.0.1.1}   # front
  - {name: db1, address: 10.0.1.2}
keys: {distribution: regenerate, cfrun: all-members, prune: true}
"""
    )
    assert document.known_addresses(document.read_existing_text(EXISTING)) == {
        "node1": "10.0.0.1",
        "old": "10.0.0.9",
        "web1": "10.0.1.99",
        "@package": "10.0.0.10",
        "@mount": "/csync",
    }


LINUX_DISCOVERY = """@hostname
node1
@sgconf
SGSBIN /opt/sg/bin
SGCONF /opt/sg/conf
@where
cmviewcl /opt/sg/bin
cfagent /usr/local/sbin
@cmviewcl
name=c1
@format line
@rc 0
@package-files
@pkgdir /opt/sg/conf/csync
package_name csync
ip_address 10.0.0.10
@hosts
@standalone
@end
"""


def test_where_the_host_keeps_serviceguard_is_parsed():
    d = parse_discovery(LINUX_DISCOVERY)
    assert d.complete and d.sgconf == {"SGSBIN": "/opt/sg/bin", "SGCONF": "/opt/sg/conf"}
    assert d.where == {"cmviewcl": "/opt/sg/bin", "cfagent": "/usr/local/sbin"}
    assert d.package_dir == "/opt/sg/conf/csync" and dict(d.package_files) == {"package_name": "csync", "ip_address": "10.0.0.10"}


def test_import_writes_platform_and_paths_only_where_csync_would_not_find_things():
    notes: list[str] = []
    imp = importer.Importer("10.0.0.1", Access(), on_note=notes.append)
    imp._layout(parse_discovery(LINUX_DISCOVERY))
    # cmviewcl is outside the default search path, cfagent inside; the package files are in $SGCONF/csync
    assert imp.layout == {"platform": {"serviceguard_path": "/opt/sg/bin"}, "paths": {"package_files_dir": "/opt/sg/conf/csync"}}
    assert imp.platform.serviceguard_path == "/opt/sg/bin" and imp.paths.package_files_dir == "/opt/sg/conf/csync"
    assert imp.platform.cfengine_path == Platform().cfengine_path
    assert len(notes) == 2 and "written as platform.serviceguard_path" in notes[0] and "written as paths.package_files_dir" in notes[1]
    # the same host, found with the layout already declared: nothing to write
    again = importer.Importer("10.0.0.1", Access(), platform=imp.platform, paths=imp.paths)
    again._layout(parse_discovery(LINUX_DISCOVERY))
    assert again.layout == {}
    # an HP-UX host (the defaults): nothing either
    hpux = importer.Importer("10.0.0.1", Access())
    hpux._layout(parse_discovery(DISCOVERY.replace("@cmviewcl", "@where\ncmviewcl /usr/sbin\n@cmviewcl")))
    assert hpux.layout == {}


def test_the_layout_found_is_written_in_a_new_document_and_merged_into_an_existing_one():
    data = {
        "version": 1,
        "site": "c1",
        "master": {
            "mode": "serviceguard",
            "cluster": "c1",
            "package": {"name": "csync", "address": "10.0.0.10", "mount": "/csync"},
            "members": [{"name": "node1", "address": "10.0.0.1"}],
        },
        "clients": [],
        "keys": {"distribution": "copy", "cfrun": "all-members", "prune": False},
        "platform": {"serviceguard_path": "/opt/sg/bin"},
        "paths": {"package_files_dir": "/opt/sg/conf/csync"},
    }
    found = importer.Found(data, [])
    new = document.dump(document.new_document(found, None, "node1"))
    assert "\npaths:\n  package_files_dir: /opt/sg/conf/csync\nplatform:\n  serviceguard_path: /opt/sg/bin\n" in new
    merged = document.dump(document.merge_document(document.read_existing_text(EXISTING + "platform:\n  cmviewcl_format: table  # ours\n"), found, None))
    assert merged.endswith("platform:\n  cmviewcl_format: table  # ours\n  serviceguard_path: /opt/sg/bin\npaths:\n  package_files_dir: /opt/sg/conf/csync\n")
