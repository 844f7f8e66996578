"""`csync trust --live`: the site's own checks, run, parsed and compared with the prediction.

The prediction (reconciler.trust.predict) says, from the facts, whether each cfrun (member ->
client) and each cfagent (client -> master address) will authenticate. The live check runs
them: on each member one `cfrun` to every client, on each client one `cfagent` per master
address that copies one file of the master's inputs into a private temporary directory
(commands.cfrun_check / cfagent_check), one script per host, in parallel. Neither changes
keys, policy or inputs (docs/TRUST.md says what each makes a host do).

`parse_check_output` and `compare` are pure; `run_live_checks` does the I/O.

A disagreement is a cell where the live check and the prediction differ (ok against
failed), or where both fail but the live failure names a file on a host that the prediction
does not give as a cause. Either is a bug in csync or a fact csync does not see (a private
key that does not match its public key, a network filter, a tool that behaves otherwise).
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reconciler.desired.model import DesiredState, Host
from reconciler.domain import dsau
from reconciler.driver import commands
from reconciler.driver.transport import Pool, TransportError, fan_out
from reconciler.observe.facts import HostFacts
from reconciler.trust.predict import (
    MISSING,
    NO_SERVER,
    OTHER_KEY,
    OWN_KEY,
    UNKNOWN_KEY,
    UNUSABLE,
    Check,
    Column,
    TrustReport,
)

# docs/LAB.md, "Output grammar": <tool> <address>: ok | <message> [<where> <detail>]
LINE = re.compile(r"^(cfrun|cfagent) (\S+): (ok|(.*) \[(local|remote|unreachable) (.*)\])$")
FILE_DETAIL = re.compile(r"^(/\S+) (missing|mismatch|unreadable|denied)$")
# [src] cfrun.c main: the banner each of cfrun's children prints before polling its host
# (the child's slot, the host as written)
CFRUN_BANNER = re.compile(r"^cfrun\((\d+)\):\s+\.+ \[ Hailing (\S+) \] \.+$")
# What cfengine 2's cfrun prints about a key it lacks (src/cfrun.c, PollServer), before the
# host's line: its question (the answer is read after "--> ", with no newline, so the host's
# line may follow it on the same line), its complaint about an answer, and with -T its notice.
# None of these is a result.
CFRUN_PROMPT = "--> "
CFRUN_CHATTER = re.compile(
    r"^(WARNING - You do not have a public key from host \S+ = \S*"
    r"|\s+Do you want to accept one on trust\? \(yes/no\)"
    r"|Please reply yes or no\.\.\.\(.*\)"
    r"|Accepting public key from \S+)$"
)
# The verdict line the cfagent check prints after each cfagent (commands.cfagent_check):
# address, whether the copy arrived (copied | absent | expired: stopped after LIMIT seconds),
# cfagent's exit status, LIMIT.
CFAGENT_VERDICT = re.compile(r"^csync-cfagent (\S+) (copied|absent|expired) (\d+) (\d+)$")


def without_cfrun_banners(text: str) -> str:
    """cfrun's output less the "Hailing" banner each child prints first (its lines kept as they are)."""
    return "".join(line for line in text.splitlines(keepends=True) if not CFRUN_BANNER.match(line.rstrip("\r\n")))


# Which predicted cause kinds explain a live complaint about the same file on the same host.
# A symbolic link is unusable to csync (never followed) but read through by cfengine, so it
# may show as any complaint. A caller without a usable own key (OWN_KEY) fails on that file
# whatever the complaint.
_EXPLAINS = {
    "missing": {MISSING, UNUSABLE},
    "unreadable": {UNUSABLE},
    "mismatch": {OTHER_KEY, UNKNOWN_KEY, UNUSABLE},
    "denied": set(),  # the master refused to serve the file the cfagent check copies: no key explains it
}
SUFFIX = "a bug in csync or a fact csync does not see"


@dataclass(frozen=True, slots=True)
class LiveResult:
    """One target's line: ok, or the tool's message and where it failed."""

    ok: bool
    line: str
    message: str = ""
    where: str = ""  # local | remote | unreachable; "" for a failure that names no file
    path: str = ""  # the file complained about (local/remote): a key file, or the file the cfagent check copies
    detail: str = ""  # missing | mismatch | unreadable | denied, or the unreachable reason

    @property
    def symbol(self) -> str:
        return "ok" if self.ok else "FAIL"


def parse_check_output(tool: str, text: str, targets: list[str]) -> tuple[dict[str, LiveResult], list[str]]:
    """(results by target address, problems) from a cfrun/cfagent output.

    Only lines of ``tool`` for one of ``targets`` count; a target with no line, or with
    two, has no result; every line that does not follow the grammar is a problem."""
    wanted = set(targets)
    found: dict[str, list[LiveResult]] = {}
    problems: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if tool == "cfrun":
            while line.startswith(CFRUN_PROMPT):
                line = line[len(CFRUN_PROMPT) :]
            if CFRUN_CHATTER.match(line) or CFRUN_BANNER.match(line):
                continue
        if not line.strip():
            continue
        m = LINE.match(line)
        if not m:
            problems.append(f"unexpected line: {line[:200]!r}")
            continue
        if m.group(1) != tool:
            problems.append(f"a {m.group(1)} line in {tool}'s output: {line[:200]!r}")
            continue
        address = m.group(2)
        if address not in wanted:
            problems.append(f"a line for {address}, which was not asked for: {line[:200]!r}")
            continue
        result = _result(m, line, address)
        if isinstance(result, str):
            problems.append(result)
            continue
        found.setdefault(address, []).append(result)
    results: dict[str, LiveResult] = {}
    for address in targets:
        got = found.get(address, [])
        if len(got) == 1:
            results[address] = got[0]
        elif not got:
            problems.append(f"no {tool} line for {address}")
        else:
            problems.append(f"{len(got)} {tool} lines for {address}; trusting none")
    return results, problems


def _chunk_line(address: str, chunk: list[str]) -> tuple[LiveResult | None, list[str], str]:
    """From cfagent's output for one address: its result line in the lab's grammar (the last
    one, as a LiveResult), the problems with the chunk, and cfengine's last other line."""
    found: LiveResult | None = None
    problems: list[str] = []
    other = ""
    for line in chunk:
        m = LINE.match(line)
        if not m or m.group(1) != "cfagent":
            other = line
            continue
        if m.group(2) != address:
            problems.append(f"a cfagent line for {m.group(2)} in the check against {address}: {line[:200]!r}")
            continue
        result = _result(m, line, address)
        if isinstance(result, str):
            problems.append(result)
        else:
            found = result
    return found, problems, other


def _result(m: re.Match[str], line: str, address: str) -> LiveResult | str:
    """One result line (matched by LINE) as a LiveResult, or the problem with it."""
    if m.group(3) == "ok":
        return LiveResult(ok=True, line=line)
    where, detail, path = m.group(5), m.group(6), ""
    if where in ("local", "remote"):
        d = FILE_DETAIL.match(detail)
        if not d:
            return f"unexpected {where} detail for {address}: {detail[:200]!r}"
        path, detail = d.group(1), d.group(2)
    return LiveResult(ok=False, line=line, message=m.group(4), where=where, path=path, detail=detail)


def parse_cfagent_output(text: str, targets: list[str]) -> tuple[dict[str, LiveResult], list[str]]:
    """(results by master address, problems) from the cfagent check's output
    (commands.cfagent_check): cfagent's own output, then the check's verdict line, per address.

    The verdict is the copy: it arrived (ok) or not (FAIL). cfagent's lines say why: a line in
    the lab's grammar names the failing file or the unreachable server (kept as the result's
    cause); cfengine's own messages, which name none, are shown as the detail of a failure that
    names no file. A cfagent that exited non-zero did not run its copy (cfengine 2 exits 1 on a
    bad command line or input file): a problem, never a result."""
    wanted = set(targets)
    results: dict[str, LiveResult] = {}
    problems: list[str] = []
    chunk: list[str] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        m = CFAGENT_VERDICT.match(line)
        if not m:
            if line.strip():
                chunk.append(line)
            continue
        address, verdict, rc, limit = m.group(1), m.group(2), int(m.group(3)), m.group(4)
        said, chunk_problems, other = _chunk_line(address, chunk)
        chunk = []
        if address not in wanted:
            problems.append(f"a verdict for {address}, which was not asked for: {line[:200]!r}")
            continue
        if address in seen:
            problems.append(f"two verdicts for {address}; trusting none")
            results.pop(address, None)
            continue
        seen.add(address)
        problems.extend(chunk_problems)
        last = said.line if said is not None else other
        if verdict == "copied":
            if rc != 0 or (said is not None and not said.ok):
                problems.append(f"cfagent against {address}: the copy arrived, but cfagent exited {rc}: {last[:200]!r}")
            else:
                results[address] = LiveResult(ok=True, line=f"cfagent {address}: ok")
        elif verdict == "expired":
            detail = f"no answer within {limit} s (stopped by csync)"
            results[address] = LiveResult(
                ok=False,
                line=f"cfagent {address}: the copy did not arrive [unreachable {detail}]",
                message="the copy did not arrive",
                where="unreachable",
                detail=detail,
            )
        elif rc != 0:
            problems.append(f"cfagent against {address} exited {rc}" + (f": {last[:200]}" if last else ""))
        elif said is not None and not said.ok:
            results[address] = said
        else:
            why = "cfagent said ok, but the copy did not arrive" if said is not None else "the copy did not arrive"
            results[address] = LiveResult(ok=False, line=f"cfagent {address}: {why}" + (f" ({other[:200]})" if other else ""), message=why)
    if chunk:
        problems.append(f"cfagent output after the last verdict: {chunk[-1][:200]!r}")
    problems.extend(f"no cfagent verdict for {address}" for address in targets if address not in seen)
    return results, problems


@dataclass(frozen=True)
class HostRun:
    """The live check on one host: results by target address, or why it did not run."""

    host: str
    results: dict[str, LiveResult] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    error: str | None = None
    seconds: float = 0.0


def interpret(host: str, tool: str, targets: list[str], exit_code: int, stdout: bytes, stderr: bytes, seconds: float = 0.0) -> HostRun:
    """A HostRun from a live-check script's exit code and output (pure)."""
    err = stderr.decode("utf-8", "replace").strip().splitlines()
    last = err[-1][:200] if err else ""
    if exit_code == commands.LIVE_TOOL_MISSING:
        return HostRun(host, error=last or f"{tool} not found", seconds=seconds)
    if exit_code not in (0, 1):
        return HostRun(host, error=f"{tool} exited {exit_code}" + (f": {last}" if last else ""), seconds=seconds)
    # cfrun and cfagent exit 0 whatever happened to each host or copy (cfengine 2's src/cfrun.c,
    # src/cfagent.c); the cfagent check's verdicts come from the copies it finds
    text = stdout.decode("utf-8", "replace")
    results, problems = parse_cfagent_output(text, targets) if tool == "cfagent" else parse_check_output(tool, text, targets)
    return HostRun(host, results=results, problems=tuple(problems), seconds=seconds)


@dataclass(frozen=True)
class LiveReport:
    """Every live check: cfrun[column][client] (a member from one of its addresses: the
    report's column label), cfagent[client] against the master's address and
    cfagent_extra[address][client] against its other addresses (None: no result)."""

    cfrun: dict[str, dict[str, LiveResult | None]]
    cfagent: dict[str, LiveResult | None]
    errors: tuple[str, ...] = ()  # "host: why" for every check that did not run or answered badly
    seconds: float = 0.0
    cfagent_extra: dict[str, dict[str, LiveResult | None]] = field(default_factory=dict)

    def result(self, column: Column, client: str) -> LiveResult | None:
        if column.tool == "cfrun":
            return self.cfrun.get(column.label, {}).get(client)
        return self.cfagent_extra.get(column.address, {}).get(client) if column.label != "cfagent" else self.cfagent.get(client)

    @property
    def complete(self) -> bool:
        """Every check on a host that answered the probe ran and answered for every target
        (a check without a result on such a host is always in ``errors``)."""
        return not self.errors


def _run(pool: Pool, state: DesiredState, host: Host, tool: str, command: commands.RemoteCommand, targets: list[str]) -> HostRun:
    start = time.monotonic()
    try:
        session = pool.connect(host)
        result = session.run_script(command, timeout=state.access.command_timeout)
    except TransportError as e:
        return HostRun(host.name, error=e.reason, seconds=time.monotonic() - start)
    return interpret(host.name, tool, targets, result.exit_code, result.stdout, result.stderr, time.monotonic() - start)


# Members whose cfrun runs at once. Each cfrun already reaches its clients in parallel, and
# every one of those dialogues costs the client a cfservd; more would only make clients time
# out (on a site where many hosts share a machine, as in the lab).
CFRUN_MEMBERS_AT_ONCE = 2


def cfrun_targets(state: DesiredState, facts: HostFacts | None) -> tuple[list[tuple[str, str, str]], bool]:
    """(host as written, address, key file cfrun authenticates it by) of every client, as the
    member's inputs/cfrun.hosts writes it (by address when it does not name the client), and
    whether that file has hostnamekeys: the live cfrun reads a hosts file like the site's."""
    hosts = facts.cfrun_hosts if facts is not None and facts.reachable else None
    written: dict[str, str] = {}
    if hosts is not None:
        for w in hosts.hosts:
            key = w if commands.IPV4.fullmatch(w) else w.lower().split(".", 1)[0]
            written.setdefault(key, w)
    by_name = bool(hosts is not None and hosts.hostnamekeys)
    out = []
    for c in state.clients:
        w = written.get(c.name.lower()) or written.get(c.address) or c.address
        named = not commands.IPV4.fullmatch(w)
        out.append((w, c.address, dsau.peer_key_name(w) if by_name and named else dsau.peer_key_name(c.address)))
    return out, by_name


def run_live_checks(
    state: DesiredState,
    pool: Pool,
    report: TrustReport,
    *,
    on_done: Callable[[Host, object], None] | None = None,
    facts: Mapping[str, HostFacts] | None = None,
) -> LiveReport:
    """Run cfagent on every client that answered the probe (against each of the master's
    addresses), then on every member that answered one cfrun to every client from each of
    its addresses (cfrun.hosts' bindtointerface for the extra ones), in parallel."""
    start = time.monotonic()
    facts = facts or {}
    server_addresses = state.server_addresses
    cfagent = commands.cfagent_check(server_addresses, commands.served_file(state), cfengine_path=state.platform.cfengine_path)
    clients = [c for c in state.clients if c.name not in report.unreachable]
    runs: dict[str, HostRun] = fan_out(
        clients,
        lambda h: _run(pool, state, h, "cfagent", cfagent, list(server_addresses)),
        parallelism=state.access.parallelism,
        on_done=on_done,
    )
    member_runs: dict[str, dict[str, tuple[HostRun, dict[str, str]]]] = {}
    if state.clients:
        members = [m for m in state.master_hosts if m.name not in report.unreachable]

        def run_member(m: Host) -> dict[str, tuple[HostRun, dict[str, str]]]:
            targets, by_name = cfrun_targets(state, facts.get(m.name))
            name_of = {w: state.clients[i].name for i, (w, _, _) in enumerate(targets)}
            out = {}
            for col in report.columns:
                if col.tool == "cfrun" and col.member == m.name:
                    bind = None if col.address == m.address else col.address
                    command = commands.cfrun_check(
                        targets, hostnamekeys=by_name, bind=bind, cfengine_dir=state.paths.cfengine_dir, cfengine_path=state.platform.cfengine_path
                    )
                    out[col.label] = (_run(pool, state, m, "cfrun", command, list(name_of)), name_of)
            return out

        member_runs = fan_out(members, run_member, parallelism=min(state.access.parallelism, CFRUN_MEMBERS_AT_ONCE), on_done=on_done)
    errors: list[str] = []
    for name, run in runs.items():
        if run.error:
            errors.append(f"{name}: {run.error}")
        errors.extend(f"{name}: {p}" for p in run.problems)
    cfrun_results: dict[str, dict[str, LiveResult | None]] = {}
    for col in report.columns:
        if col.tool != "cfrun":
            continue
        got = member_runs.get(col.member or "", {}).get(col.label)
        if got is not None:
            run, name_of = got
            if run.error:
                errors.append(f"{col.label}: {run.error}")
            errors.extend(f"{col.label}: {p}" for p in run.problems)
            by_client = {name_of[w]: r for w, r in run.results.items()}
        else:
            by_client = {}
        cfrun_results[col.label] = {c.name: by_client.get(c.name) for c in state.clients}
    cfagent_results = {c.name: (runs[c.name].results.get(report.server_address) if c.name in runs else None) for c in state.clients}
    cfagent_extra = {a: {c.name: (runs[c.name].results.get(a) if c.name in runs else None) for c in state.clients} for a in server_addresses[1:]}
    return LiveReport(cfrun=cfrun_results, cfagent=cfagent_results, errors=tuple(sorted(errors)), seconds=time.monotonic() - start, cfagent_extra=cfagent_extra)


# --- comparison ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disagreement:
    check: str  # cfrun | cfagent
    member: str | None  # the cfrun column (member, or member@address); cfagent: None, or the column of another master address
    client: str
    predicted: str  # ok | FAIL
    live: str  # ok | FAIL
    predicted_problems: tuple[str, ...]
    live_line: str
    why: str

    @property
    def where(self) -> str:
        if self.check == "cfrun":
            return f"cfrun {self.member} -> {self.client}"
        return f"{self.member or 'cfagent'} on {self.client}"

    @property
    def message(self) -> str:
        return f"{self.where}: {self.why} ({SUFFIX})"


def _explained(live: LiveResult, predicted: Check, local: str, remote: str | None) -> bool:
    """Whether a predicted cause accounts for the live failure."""
    if not live.where:
        return True  # a failure that names no file (cfengine's own messages): nothing to contradict
    if live.where == "unreachable":
        return any(c.kind == NO_SERVER for c in predicted.causes)
    host = local if live.where == "local" else remote
    file = posixpath.basename(live.path)
    kinds = _EXPLAINS.get(live.detail, set())
    return any(c.host == host and c.file == file and (c.kind in kinds or c.kind == OWN_KEY) for c in predicted.causes)


def _compare_cell(
    check: str, member: str | None, client: str, predicted: Check, live: LiveResult | None, local: str, remote: str | None
) -> Disagreement | None:
    if predicted.ok is None or live is None:
        return None  # a host did not answer the probe, or the live check gave no answer: nothing to compare
    if predicted.ok and live.ok:
        return None
    if predicted.ok and not live.ok and live.where == "unreachable":
        why = (
            f"predicted ok, but the live check did not reach its peer: {live.line} (csync's probe does not test the "
            f"network between hosts; a filter, a hung host or an overloaded one)"
        )
    elif predicted.ok and not live.ok:
        why = f"predicted ok, but the live check failed: {live.line}"
    elif not predicted.ok and live.ok:
        why = f"predicted to fail ({'; '.join(predicted.problems)}), but the live check succeeded"
    elif _explained(live, predicted, local, remote):
        return None
    else:
        why = f"both fail, but the live failure has no predicted cause: {live.line}; predicted: {'; '.join(predicted.problems)}"
    return Disagreement(check, member, client, predicted.symbol, live.symbol, predicted.problems, live.line, why)


def compare(report: TrustReport, live: LiveReport) -> list[Disagreement]:
    """Every cell where the live check and the prediction disagree, in matrix order."""
    server = report.server
    out: list[Disagreement] = []
    for col in report.columns:
        if col.tool != "cfrun":
            continue
        for c in report.clients:
            d = _compare_cell("cfrun", col.label, c, report.cfrun[col.label][c], live.result(col, c), local=col.member or "", remote=c)
            if d:
                out.append(d)
    for col in report.columns:
        if col.tool != "cfagent":
            continue
        for c in report.clients:
            d = _compare_cell("cfagent", None if col.label == "cfagent" else col.label, c, report.check(col, c), live.result(col, c), local=c, remote=server)
            if d:
                out.append(d)
    return out


def verdict(report: TrustReport, live: LiveReport | None, disagreements: list[Disagreement]) -> tuple[bool, tuple[str, ...]]:
    """(failover-ready, why not): the prediction's, and with live checks, also that they ran
    completely and agree with it (a prediction the site contradicts proves nothing)."""
    reasons = [f"unknown: {u}" for u in report.unsure] + list(report.reasons)
    if live is not None:
        if disagreements:
            reasons.append(f"{len(disagreements)} live check(s) disagree with the prediction ({SUFFIX})")
        if not live.complete:
            shown = "; ".join(live.errors[:3]) + ("; ..." if len(live.errors) > 3 else "")
            reasons.append(f"{len(live.errors)} live check problem(s): {shown}")
    return not reasons, tuple(reasons)


@dataclass(frozen=True)
class TrustView:
    """Everything one `csync trust` run shows: the prediction, and with --live the checks."""

    report: TrustReport
    failover_ready: bool
    reasons: tuple[str, ...]
    live: LiveReport | None = None
    disagreements: tuple[Disagreement, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_disagreeing", {(d.member, d.client) for d in self.disagreements})

    def disagrees(self, member: str | None, client: str) -> bool:
        """Whether the live check of this cell (a column label; None: cfagent against the master's address) disagrees."""
        return (member, client) in self._disagreeing  # type: ignore[attr-defined]


def assess(
    state: DesiredState,
    pool: Pool,
    *,
    live: bool,
    on_probed: Callable[[object], None] | None = None,
    on_checked: Callable[[Host, object], None] | None = None,
) -> TrustView:
    """Probe, predict, and with ``live`` run and compare the live checks."""
    from reconciler.observe.probe import probe_site
    from reconciler.trust.predict import trust_report

    site = probe_site(state, pool, on_done=on_probed)
    report = trust_report(state, site.hosts)
    live_report = run_live_checks(state, pool, report, on_done=on_checked, facts=site.hosts) if live else None
    disagreements = compare(report, live_report) if live_report is not None else []
    ready, reasons = verdict(report, live_report, disagreements)
    return TrustView(report, ready, reasons, live_report, tuple(disagreements))
