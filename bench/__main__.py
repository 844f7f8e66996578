"""csync against Ansible and pyinfra on the same lab, in the same run.

    python -m bench [--sizes 50 200] [--repeat 3] [--json FILE]     (root; starts and stops labs)

For each size N it starts a lab of N hosts (3 members, N-3 clients, scenario `seed`) and
times, alternating the order on every repetition (the machine is noisy: compare ratios):

  floor     a bare fabric `hostname` fan-out, one round trip per host (python -m bench.floor)
  csync     `csync plan`: probe every host + plan
  ansible   ansible-playbook, forks = N, pipelining, ControlPersist, no fact gathering, the
            way an Ansible user gathers these facts: modules (stat, find, slurp of every key
            file, shell for cksum and cmviewcl, slurp of authorized_keys)
  pyinfra   `pyinfra INVENTORY fact ...`, --parallel N, pyinfra's own facts for the same
            data (Hostname, Directory, FindFiles, FileContents of the key files every host
            shares, a cksum and a cmviewcl Command, AuthorizedKeys); it reads less than csync
            (not the members' copies of the clients' keys: their names differ per host)
  ansible-script, pyinfra-script
            the same two tools running csync's own probe script (one `raw` task per host,
            one server.Command fact): what is left is the tools' transport and start-up
  apply     `csync apply --auto-approve` of the `seed` scenario (reseeded before each run,
            outside the timing)

Every tool is run as its command line program (start-up included) and checked: the peers'
answers are parsed by csync's own parser and counted, csync's plan must have no unknown
host, the floor must hear every host. Ansible and pyinfra come from the `bench` extra:
pip install -e '.[bench]'. Prints a table and writes JSON (default bench-results.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.proc import csync_argv, csync_env, load_average, measured_run, patient_state
from reconciler.desired.loader import load_desired_state
from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.driver import commands
from reconciler.observe.facts import parse_probe

MEMBERS = 3
TOOLS = ("floor", "csync", "ansible", "pyinfra", "ansible-script", "pyinfra-script")


class BenchError(Exception):
    pass


def _run(argv: list[str], *, env: dict | None = None, cwd: Path | None = None, ok: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess]:
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    seconds = time.monotonic() - start
    if done.returncode not in ok:
        raise BenchError(f"{' '.join(argv[:3])}... exited {done.returncode}: {(done.stderr or done.stdout)[-600:]}")
    return seconds, done


def _probe_docs_ok(state: DesiredState, stdout_of: dict[str, str], role_of: Callable[[str], str]) -> int:
    """How many hosts answered with a probe document csync's parser accepts."""
    good = 0
    for host in state.all_hosts:
        out = stdout_of.get(host.name)
        if out is None:
            continue
        facts = parse_probe(host.name, host.address, role_of(host.name), out.replace("\r\n", "\n").encode(), 0)
        good += facts.reachable and facts.hostname == host.name
    return good


class Peers:
    """Ansible's and pyinfra's working files for one lab."""

    def __init__(self, work: Path, state: DesiredState):
        self.work, self.state = work, state
        a = state.access
        self.key, self.known_hosts, self.port = str(a.identity_file), str(a.known_hosts), a.port
        self.n = len(state.all_hosts)
        # csync's probe script as the peers run it: without its stdin watcher (BOUNDED empty),
        # since their transports may close a command's standard input at once, which tells
        # the watcher that the caller gave up (csync's holds it open: probe.sh)
        self.scripts = {role: commands.probe(state, role).script.replace("\nBOUNDED=stdin\n", "\nBOUNDED=\n") for role in ("member", "client")}
        self._write_ansible()
        self._write_pyinfra()

    def role(self, name: str) -> str:
        return self.state.role_of(name)

    # --- Ansible ---------------------------------------------------------------------------
    def _write_ansible(self) -> None:
        d = self.work / "ansible"
        (d / "cp").mkdir(parents=True)
        for role, script in self.scripts.items():
            (d / f"probe-{role}.sh").write_text(script)
        for cfg, tree in (("ansible.cfg", True), ("modules.cfg", False)):
            (d / cfg).write_text(
                f"""[defaults]
forks = {self.n}
host_key_checking = True
gathering = explicit
retry_files_enabled = False
deprecation_warnings = False
"""
                + (
                    f"""callbacks_enabled = ansible.builtin.tree
[callback_tree]
directory = {d / "tree"}
"""
                    if tree
                    else ""
                )
                + f"""[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes
control_path_dir = {d / "cp"}
"""
            )
        lines = ["[all:vars]", "ansible_user=root", f"ansible_port={self.port}", f"ansible_ssh_private_key_file={self.key}", "[members]"]
        lines += [f"{h.name} ansible_host={h.address}" for h in self.state.master_hosts]
        lines += ["[clients]"] + [f"{h.name} ansible_host={h.address}" for h in self.state.clients]
        lines += ["[members:vars]", "probe_role=member", "[clients:vars]", "probe_role=client"]
        (d / "inventory.ini").write_text("\n".join(lines) + "\n")
        (d / "probe.yml").write_text("""- hosts: all
  gather_facts: false
  tasks:
    - raw: "{{ lookup('file', 'probe-' + probe_role + '.sh') }}"
      changed_when: false
""")
        cf = str(self.state.paths.cfengine_dir)
        (d / "modules.yml").write_text(f"""- hosts: all
  gather_facts: false
  tasks:
    - command: uname -n
      changed_when: false
    - stat: {{path: "{cf}/{{{{ item }}}}", follow: false, get_checksum: false}}
      loop: [".", ppkeys, inputs]
    - find: {{paths: "{cf}/ppkeys", patterns: "localhost.pub,root-*.pub", file_type: any}}
      register: keyfiles
    - slurp: {{src: "{{{{ item.path }}}}"}}
      loop: "{{{{ keyfiles.files }}}}"
      loop_control: {{label: "{{{{ item.path }}}}"}}
    - shell: find {cf}/inputs -type f -exec cksum {{}} +
      changed_when: false
    - shell: cmviewcl -v -f line
      when: probe_role == "member"
      changed_when: false
    - stat: {{path: /root/.ssh/authorized_keys, get_checksum: false}}
      register: ak
    - slurp: {{src: /root/.ssh/authorized_keys}}
      when: ak.stat.exists
""")

    def ansible(self) -> float:
        """Ansible's modules; every host must end with every task ok and none failed."""
        d = self.work / "ansible"
        env = dict(os.environ, ANSIBLE_CONFIG=str(d / "modules.cfg"))
        seconds, done = _run(["ansible-playbook", "-i", "inventory.ini", "modules.yml"], env=env, cwd=d)
        recap = re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", done.stdout, re.M)
        got = sum(1 for host, ok, unreachable, failed in recap if int(ok) >= 6 and unreachable == failed == "0")
        if got != self.n:
            raise BenchError(f"ansible: {got} of {self.n} hosts gathered every fact")
        return seconds

    def ansible_script(self) -> float:
        d = self.work / "ansible"
        shutil.rmtree(d / "tree", ignore_errors=True)
        env = dict(os.environ, ANSIBLE_CONFIG=str(d / "ansible.cfg"))
        seconds, _ = _run(["ansible-playbook", "-i", "inventory.ini", "probe.yml"], env=env, cwd=d)
        outs = {}
        for f in (d / "tree").iterdir():
            outs[f.name] = json.loads(f.read_text()).get("stdout", "")
        got = _probe_docs_ok(self.state, outs, self.role)
        if got != self.n:
            raise BenchError(f"ansible: {got} of {self.n} hosts gave a usable probe answer")
        return seconds

    def stop_ansible(self) -> None:
        """Close the ControlPersist masters Ansible left (each exits on `ssh -O exit`)."""
        for sock in (self.work / "ansible" / "cp").glob("*"):
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "lab"], capture_output=True, timeout=30)

    # --- pyinfra ---------------------------------------------------------------------------
    def _write_pyinfra(self) -> None:
        d = self.work / "pyinfra"
        d.mkdir()
        data = {"ssh_user": "root", "ssh_port": self.port, "ssh_key": self.key, "ssh_known_hosts_file": self.known_hosts, "ssh_strict_host_key_checking": "yes"}
        hosts = [(h.name, dict(data, ssh_hostname=h.address)) for h in self.state.all_hosts]
        (d / "inventory.py").write_text(f"hosts = {hosts!r}\n")

    def pyinfra(self) -> float:
        """pyinfra's own facts; every host must answer every one."""
        d = self.work / "pyinfra"
        cf = str(self.state.paths.cfengine_dir)
        shared = [dsau.OWN_PUBLIC_KEY, dsau.peer_key_name(self.state.master.package.address), *(dsau.peer_key_name(h.address) for h in self.state.master_hosts)]
        facts = [
            "server.Hostname",
            "files.Directory",
            f"path={cf}",
            "files.Directory",
            f"path={cf}/ppkeys",
            "files.Directory",
            f"path={cf}/inputs",
            "files.FindFiles",
            f"path={cf}/ppkeys",
        ]
        for name in shared:
            facts += ["files.FileContents", f"path={cf}/ppkeys/{name}"]
        facts += [
            "server.Command",
            f"command=find {cf}/inputs -type f -exec cksum {{}} +",
            "server.Command",
            "command=cmviewcl -v -f line 2>&1 || true",
            "server.AuthorizedKeys",
            "user=root",
        ]
        seconds, done = _run(["pyinfra", "inventory.py", "--parallel", str(self.n), "--json", "fact", *facts], cwd=d)
        result = json.loads(done.stdout)
        hostnames = next(v for k, v in result.items() if k.startswith("server.Hostname"))
        listings = next(v for k, v in result.items() if k.startswith("files.FindFiles"))
        got = sum(1 for h in self.state.all_hosts if hostnames.get(h.name) == h.name and listings.get(h.name))
        if len(result) != len(shared) + 8 or got != self.n:
            raise BenchError(f"pyinfra: {len(result)} facts, {got} of {self.n} hosts answered them")
        return seconds

    def pyinfra_script(self) -> float:
        d = self.work / "pyinfra"
        seconds, done = _run(
            ["pyinfra", "inventory.py", "--parallel", str(self.n), "--json", "fact", "server.Command", f"command={self.scripts['member']}"], cwd=d
        )
        (result,) = json.loads(done.stdout).values()
        got = _probe_docs_ok(self.state, {k: v or "" for k, v in result.items()}, lambda _name: "member")
        if got != self.n:
            raise BenchError(f"pyinfra: {got} of {self.n} hosts gave a usable probe answer")
        return seconds


# CPU seconds and peak RSS (MiB) of the last run of csync and the floor, by tool
USAGE: dict[str, tuple[float, float]] = {}


def _measured(tool: str, argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess]:
    """A run of csync or the floor (bench.proc: this checkout's code), its CPU and peak RSS kept in USAGE."""
    m = measured_run(argv, env=csync_env(), timeout=1800)
    if m.done.returncode not in ok:
        raise BenchError(f"{tool} exited {m.done.returncode}: {(m.done.stderr or m.done.stdout)[-600:]}")
    USAGE[tool] = (m.cpu, m.rss_mib)
    return m.seconds, m.done


def csync_plan(state_file: Path, out: Path) -> float:
    seconds, _ = _measured("csync", csync_argv("plan", "-f", str(state_file), "--format", "json", "--out", str(out)))
    plan = json.loads(out.read_text())
    if plan["unknown"] or not plan["actions"]:
        raise BenchError(f"csync plan: {len(plan['unknown'])} unknown, {len(plan['actions'])} actions")
    return seconds


def floor(state_file: Path, n: int) -> float:
    seconds, done = _measured("floor", [sys.executable, "-m", "bench.floor", str(state_file)])
    if int(done.stdout.strip() or 0) != n:
        raise BenchError(f"floor: {done.stdout.strip()} of {n} hosts answered")
    return seconds


def bench_size(n: int, repeat: int, work: Path, tools: tuple[str, ...] = TOOLS, connect_timeout: float = 5) -> dict:
    from reconciler.lab import Lab

    lab = Lab(work / "lab")
    up = lab.up(members=MEMBERS, clients=n - MEMBERS, scenario="seed")
    print(f"  N={n}: lab up in {up:.1f}s ({lab.timings}); load average {load_average()}", flush=True)
    load = [load_average()]
    peers = None
    try:
        state_file = Path(lab.desired_state_path) if connect_timeout == 5 else patient_state(Path(lab.desired_state_path), work, connect_timeout)
        state = load_desired_state([state_file])
        peers = Peers(work, state)
        runners = {
            "floor": lambda: floor(state_file, n),
            "csync": lambda: csync_plan(state_file, work / "plan.json"),
            "ansible": peers.ansible,
            "pyinfra": peers.pyinfra,
            "ansible-script": peers.ansible_script,
            "pyinfra-script": peers.pyinfra_script,
        }
        times: dict[str, list[float]] = {t: [] for t in (*tools, "apply")}
        cpu: dict[str, list[float]] = {t: [] for t in ("floor", "csync", "apply")}
        rss: dict[str, list[float]] = {t: [] for t in ("floor", "csync", "apply")}
        for r in range(repeat):
            order = tools[r % len(tools) :] + tools[: r % len(tools)]  # rotate: no tool always first
            for tool in order:
                times[tool].append(runners[tool]())
                if tool in cpu:
                    cpu[tool].append(USAGE[tool][0])
                    rss[tool].append(USAGE[tool][1])
            lab.reseed("seed")
            seconds, _ = _measured("apply", csync_argv("apply", "-f", str(state_file), "--auto-approve", "--allow-cluster-ops"))
            times["apply"].append(seconds)
            cpu["apply"].append(USAGE["apply"][0])
            rss["apply"].append(USAGE["apply"][1])
            _, check = _measured("check", csync_argv("plan", "-f", str(state_file), "--detailed-exitcode"), ok=(0, 2))
            if check.returncode != 0:
                raise BenchError("csync apply did not converge the seed scenario")
            lab.reseed("seed")
            load.append(load_average())
            print(
                f"  N={n} round {r + 1}/{repeat}: "
                + ", ".join(f"{t} {times[t][-1]:.2f}s" + (f" (CPU {cpu[t][-1]:.1f}s, RSS {rss[t][-1]:.0f} MiB)" if t in cpu else "") for t in (*order, "apply"))
                + f"; load average {load[-1]}",
                flush=True,
            )
    finally:
        if peers:
            peers.stop_ansible()
        lab.down()
    return {"hosts": n, "members": MEMBERS, "clients": n - MEMBERS, "lab_up_seconds": up, "times": times, "cpu": cpu, "peak_rss_mib": rss, "load_average": load}


def summarise(row: dict) -> dict:
    med = {t: statistics.median(v) for t, v in row["times"].items()}
    row = {
        **row,
        "median_cpu": {t: statistics.median(v) for t, v in row["cpu"].items() if v},
        "max_rss_mib": {t: max(v) for t, v in row["peak_rss_mib"].items() if v},
    }
    ratios = {"csync_plan_over_floor": med["csync"] / med["floor"], "apply_over_plan": med["apply"] / med["csync"]}
    for peer in ("pyinfra", "ansible", "pyinfra-script", "ansible-script"):
        if peer in med:
            ratios[f"{peer.replace('-', '_')}_over_csync_plan"] = med[peer] / med["csync"]
    return {**row, "median": med, "spread": {t: [min(v), max(v)] for t, v in row["times"].items()}, "ratios": ratios}


def print_table(rows: list[dict]) -> None:
    print()
    print(f"{'hosts':>5}  {'tool':<16} {'median s':>9} {'min..max s':>13} {'x floor':>8} {'x csync plan':>13} {'CPU s':>7} {'peak RSS':>9}")
    for row in rows:
        m, s = row["median"], row["spread"]
        for tool, label in (
            ("floor", "fabric floor"),
            ("csync", "csync plan"),
            ("pyinfra", "pyinfra facts"),
            ("ansible", "ansible modules"),
            ("pyinfra-script", "pyinfra+probe"),
            ("ansible-script", "ansible+probe"),
            ("apply", "csync apply"),
        ):
            if tool not in m:
                continue
            usage = ""
            if tool in row["median_cpu"]:
                usage = f" {row['median_cpu'][tool]:>7.1f} {row['max_rss_mib'][tool]:>5.0f} MiB"
            print(
                f"{row['hosts']:>5}  {label:<16} {m[tool]:>9.2f} {s[tool][0]:>6.2f}..{s[tool][1]:<5.2f} "
                f"{m[tool] / m['floor']:>8.2f} {m[tool] / m['csync']:>13.2f}{usage}"
            )
    print()
    for row in rows:
        r = row["ratios"]
        line = [f"N={row['hosts']}: csync plan {r['csync_plan_over_floor']:.2f}x the floor (target <= 1.3x)"]
        if "pyinfra_over_csync_plan" in r:
            line.append(f"pyinfra {r['pyinfra_over_csync_plan']:.1f}x slower (target >= 3x)")
        if "ansible_over_csync_plan" in r:
            line.append(f"ansible {r['ansible_over_csync_plan']:.1f}x slower (target >= 10x)")
        line.append(f"apply {r['apply_over_plan']:.2f}x the plan (target <= 2.5x)")
        line.append(f"csync's peak RSS {max(row['max_rss_mib']['csync'], row['max_rss_mib']['apply']):.0f} MiB (target < 500)")
        line.append(f"load average {row['load_average'][0]} .. {row['load_average'][-1]}")
        print("; ".join(line))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 200], help="lab sizes (hosts, 3 of them members)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--connect-timeout", type=float, default=5, help="access.connect_timeout for every tool (the lab's is 5 s; a loaded machine needs more at 2,000 hosts)"
    )
    p.add_argument("--json", default="bench-results.json", help="where to write the results")
    p.add_argument(
        "--tools", nargs="+", choices=TOOLS, default=list(TOOLS), help="which to time (floor and csync always run; Ansible's modules take minutes at 200 hosts)"
    )
    args = p.parse_args(argv)
    tools = tuple(t for t in TOOLS if t in {"floor", "csync", *args.tools})
    needed = (
        ["ssh"]
        + (["ansible-playbook"] if {"ansible", "ansible-script"} & {*args.tools} else [])
        + (["pyinfra"] if {"pyinfra", "pyinfra-script"} & {*args.tools} else [])
    )
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        print(f"python -m bench: not installed: {', '.join(missing)}; run: pip install -e '.[bench]'", file=sys.stderr)
        return 3
    if any(n <= MEMBERS for n in args.sizes):
        print(f"python -m bench: sizes must exceed {MEMBERS} (the members)", file=sys.stderr)
        return 64
    rows = []
    try:
        for n in args.sizes:
            with tempfile.TemporaryDirectory(prefix=f"csync-bench-{n}-") as d:
                rows.append(summarise(bench_size(n, args.repeat, Path(d), tools, args.connect_timeout)))
    except BenchError as e:
        print(f"python -m bench: {e}", file=sys.stderr)
        return 1
    print_table(rows)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "ansible": _version(["ansible", "--version"]),
        "pyinfra": _version(["pyinfra", "--version"]),
    }
    Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"results written to {args.json}")
    return 0


def _version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    out = subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()
    return out[0].strip() if out else "?"


if __name__ == "__main__":
    sys.exit(main())
