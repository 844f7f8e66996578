"""`csync import`: write the desired state of a live site (see reconciler/importer/)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from reconciler.cli.main import accept_new_option
from reconciler.errors import ExitCode, InvalidInput


@click.command("import")
@click.option("--from", "entry", required=True, metavar="HOST", help="The standalone master or any member of the cluster (IPv4 address or resolvable name).")
@click.option(
    "--access",
    "access_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Take the connection settings (the `access:` section) from this YAML file, e.g. a desired-state "
    "file; they are written to the output too. Default: the output file's own, else the defaults.",
)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (an existing file is updated in place, its comments and order kept). Default: standard output.",
)
@click.option("--site", "site", metavar="NAME", help="Site name for a new file (default: the cluster's name, or the master's).")
@click.option(
    "--adopt-keys",
    "adopt",
    is_flag=True,
    help="Also record every key file found on the hosts in the site's inventory (on the master, under the site "
    "lock): csync then owns them, and keys.prune removes those no longer declared for their host.",
)
@accept_new_option
def import_(entry, access_file, output, site, adopt, accept_new_host_keys) -> int:
    """Probe a live site from HOST and write the desired state that describes it today.

    Finds the cluster, the csync package (address, mount point, preferred node) and the
    members from the host's cmviewcl, package file and /etc/hosts, and the clients from
    the master's key store (root-<IP>.pub), named by their own uname -n. Changes nothing
    on any host (with --adopt-keys: nothing but the site's inventory). Review the result,
    commit it, and `csync plan` shows what csync would still change (nothing on a healthy site).
    """
    from reconciler.desired.loader import load_access_file
    from reconciler.desired.model import Access, Paths, Platform
    from reconciler.desired.values import is_host_name
    from reconciler.importer import discover as importer
    from reconciler.importer import document

    if site is not None and not is_host_name(site):
        raise click.BadParameter(f"{site!r} is not a valid site name (letters, digits and '-')", param_hint="--site")
    existing = None
    if output is not None and output.exists():
        existing = document.read_existing(output)
    if access_file is not None:
        if not access_file.is_file():
            raise InvalidInput(f"--access {access_file}: no such file")
        access = load_access_file(access_file)
        fields = set(access.model_fields_set)
    elif existing is not None and isinstance(existing, dict) and "access" in existing:
        access, fields = load_access_file(output), None
    else:
        access, fields = Access(), None
    paths, platform = Paths(), Platform()
    for section in ("paths", "platform"):
        if isinstance(existing, dict) and isinstance(existing.get(section), dict):
            try:
                if section == "paths":
                    paths = Paths.model_validate(dict(existing[section]))
                else:
                    platform = Platform.model_validate(dict(existing[section]))
            except ValueError:  # pydantic's ValidationError
                raise InvalidInput(f"{output}: its {section}: section is invalid; run csync validate -f {output}") from None

    def note(text: str) -> None:
        click.echo(f"note: {text}", err=True)

    found = importer.Importer(
        entry, access, accept_new_host_keys=accept_new_host_keys, paths=paths, platform=platform, known=document.known_addresses(existing), on_note=note
    ).run()
    if site:
        found.data["site"] = site
    out_dir = output.parent.resolve() if output is not None else None
    access_out = document.access_data(access, fields, out_dir) if access_file is not None else None
    if existing is not None:
        doc = document.merge_document(existing, found, access_out)
        if site:
            doc["site"] = site
    else:
        doc = document.new_document(found, access_out, entry)
    text = document.dump(doc)
    state = document.check(text, out_dir if out_dir is not None else Path(tempfile.gettempdir()))
    d = found.data
    what = (
        f"cluster {d['master']['cluster']}, {len(d['master']['members'])} members"
        if d["master"]["mode"] == "serviceguard"
        else f"standalone master {d['master']['host']['name']}"
    ) + f", {len(d['clients'])} clients"
    if output is None:
        sys.stdout.write(text)
        click.echo(f"Imported site {doc.get('site')}: {what}.", err=True)
    else:
        tmp = output.with_name(f".{output.name}.csync-import.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, output)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise InvalidInput(f"-o {output}: cannot write it: {e.strerror or e}") from None
        click.echo(f"{'Updated' if existing is not None else 'Wrote'} {output}: site {doc.get('site')}, {what}. Check it with: csync plan -f {output}")
    if adopt:
        from reconciler.cli.main import open_pool
        from reconciler.importer.adopt import adopt_keys

        with open_pool(state, accept_new_host_keys) as pool:
            adopted = adopt_keys(state, pool)
        click.echo(
            f"Adopted {adopted.files} key file(s) on {adopted.hosts} host(s) into the inventory ({adopted.node}:{adopted.path}); csync owns them now.",
            err=output is None,
        )
        for name in adopted.unreachable:
            click.echo(f"note: {name} did not answer: its key files were not adopted", err=True)
    return ExitCode.OK


import_.name = "import"
