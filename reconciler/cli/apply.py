"""`csync apply` and `csync unlock` (registered on the main group by reconciler/cli/main.py).

The views live here: a line per action, and on a terminal (not CI) a rich progress bar per
wave (reconciler.views.progress) under them. The work is reconciler.apply.run's; this
module prints and picks exit codes.
"""

from __future__ import annotations

import signal
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.apply.events import Events
from reconciler.cli.main import (
    DEFAULT_DESIRED_STATE,
    EXIT_CODES_HELP,
    accept_new_option,
    desired_state_option,
    load_state,
    target_options,
)
from reconciler.errors import ExitCode
from reconciler.views.grouping import compress, group_actions
from reconciler.views.plan import render_text
from reconciler.views.style import finding_line, interactive, styler, use_color

if TYPE_CHECKING:
    from reconciler.views.progress import ProgressView, Task

_MARK = {"done": ("ok", "green"), "failed": ("FAILED", "red"), "skipped": ("skipped", "yellow"), "stale": ("STALE", "magenta")}


class TextView(Events):
    """Line-per-event output; coloured when writing to a terminal."""

    def __init__(self, color: bool, lock_timeout: float):
        self.color = color
        self.style = styler(color)
        self.lock_timeout = lock_timeout

    def echo(self, text: str = "") -> None:
        click.echo(text)

    # --- Events ------------------------------------------------------------------------
    def lock_waiting(self, record) -> None:
        self.echo(f"Waiting up to {self.lock_timeout:g} s for the site lock: {record.describe()}")

    def lock_acquired(self, lock) -> None:
        for r in lock.taken_over:
            self.echo(self.style("Took over an expired lock: ", fg="yellow", bold=True) + r.describe())
        self.echo(f"Locked site {lock.state.site}: {lock.node.name}:{', '.join(lock.paths)} (lock {lock.id}, lease {lock.lease} s, renewed while running)")

    def planned(self, plan, facts_seconds) -> None:
        self.echo(render_text(plan, color=self.color).rstrip("\n"))
        self.echo()

    def wave_started(self, number, total, actions) -> None:
        hosts = len({a.host for a in actions})
        self.echo(self.style(f"Wave {number}/{total}", bold=True) + f": {len(actions)} action(s) on {hosts} host(s)")

    def action_started(self, action) -> None:
        pass

    def action_finished(self, result) -> None:
        """What did not go as planned is printed at once, in full; what was done, grouped
        when its wave ends (one line per group of alike actions)."""
        if result.outcome != "done":
            self.echo(self.result_line(result))

    def result_line(self, result) -> str:
        word, colour = _MARK[result.outcome]
        a = result.action
        line = f"  {self.style(f'{word:<7}', fg=colour, bold=True)} {a.address} [{a.kind}] on {a.host}"
        return line + (f" ({result.seconds:.2f}s)" if result.outcome == "done" else f": {result.detail}")

    def wave_finished(self, number, results) -> None:
        done = {r.action.id: r for r in results if r.outcome == "done"}
        for g in group_actions(r.action for r in results if r.outcome == "done"):
            if g.single:
                self.echo(self.result_line(done[g.first.id]))
                continue
            word, colour = _MARK["done"]
            slowest = max(done[a.id].seconds for a in g.actions)
            self.echo(
                f"  {self.style(f'{word:<7}', fg=colour, bold=True)} {g.address} [{g.first.kind} x {len(g.actions)}] on {compress(g.hosts)} ({slowest:.2f}s)"
            )

    def notice(self, text) -> None:
        self.echo(self.style("Note: ", fg="yellow", bold=True) + text)

    def inventory(self, inventory) -> None:
        if inventory.error:
            self.echo(self.style("Inventory ", fg="yellow") + inventory.error)
        else:
            self.echo(f"Inventory {inventory.node}:{inventory.path}: {inventory.addresses} key file(s) csync owns")

    def converging(self) -> None:
        self.echo("Checking convergence: every host probed again after the last wave, planning again...")

    def finished(self, report) -> None:
        if not report.plan.actions and not report.cancelled:
            if not report.plan.clean:
                self.echo("Nothing to apply, but the plan has blocked or unknown items (above): not converged.")
            return
        for line in summary_lines(report, self.style):
            self.echo(line)


class RichView(TextView):
    """On a terminal: a progress bar per wave with a live count of ok, failed and stale; only
    what did not go as planned is listed above it (the journal keeps every action)."""

    def __init__(self, color: bool, lock_timeout: float):
        super().__init__(color, lock_timeout)
        self.progress: ProgressView | None = None
        self.task: Task | None = None
        self.counts: dict[str, int] = {}

    def echo(self, text: str = "") -> None:
        if self.progress is not None:
            self.progress.print(text)
        else:
            click.echo(text)

    def wave_started(self, number, total, actions) -> None:
        from reconciler.views.progress import ProgressView

        super().wave_started(number, total, actions)
        self.progress = ProgressView(stream=sys.stdout, color=self.color).start()
        self.wave = f"wave {number}/{total}"
        self.counts = {"done": 0, "failed": 0, "stale": 0, "skipped": 0}
        self.task = self.progress.task(self.wave, len(actions))

    def action_finished(self, result) -> None:
        super().action_finished(result)
        self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1
        if self.task is not None:
            c = self.counts
            self.task.describe(f"{self.wave}  ok {c['done']}  failed {c['failed']}  stale {c['stale']}")
            self.task()

    def wave_finished(self, number, results) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = self.task = None
        c = self.counts
        self.echo(f"  {self.wave}: {c['done']} ok, {c['failed']} failed, {c['stale']} stale, {c['skipped']} skipped")


def summary_lines(report, style) -> list[str]:
    c = report.counts()
    out = [""]
    head = (
        f"Apply {'interrupted' if report.interrupted else 'cancelled' if report.cancelled else 'finished'}: "
        f"{c['done']} done, {c['failed']} failed, {c['skipped']} skipped, {c['stale']} stale in {report.seconds:.1f}s."
    )
    out.append(style(head, bold=True))
    if report.cancelled:
        out.append("Nothing was run.")
    if report.interrupted:
        out.append(f"{report.interrupted}: no new action was started; running host scripts finished; the lock was released.")
    if report.lock_problem:
        out.append(style("Lock lost: ", fg="red", bold=True) + report.lock_problem + "; no new action was started.")
    sections = (
        ("failed", "Failed:", "red", "!"),
        ("stale", "Stale (not run: the facts it was planned from changed; plan again):", "magenta", "~"),
        ("skipped", "Skipped:", "yellow", "-"),
    )
    for outcome, title, colour, mark in sections:
        items = report.of(outcome)
        if items:
            out.append(style(title, fg=colour, bold=True))
            out += [f"  {mark} {r.action.address} [{r.action.kind}] on {r.action.host}: {r.detail}" for r in items]
    if report.plan.blocked or report.plan.unknown:
        out.append(style("Blocked or unknown in the plan (not attempted):", fg="red", bold=True))
        out += [f"  ! {finding_line(f)}" for f in (*report.plan.blocked, *report.plan.unknown)]
    final = report.final_plan
    if final is not None:
        if final.clean:
            out.append(style("Converged:", fg="green", bold=True) + " a new plan from fresh facts has no actions, nothing blocked, nothing unknown.")
        else:
            out.append(style("Not converged:", fg="red", bold=True) + " a new plan from fresh facts still has:")
            out += [f"  + {a.address} [{a.kind}] on {a.host}: {a.reason}" for a in final.actions]
            out += [f"  ! blocked {finding_line(f)}" for f in final.blocked]
            out += [f"  ? unknown {finding_line(f)}" for f in final.unknown]
    return out


def _install_signals(stop):
    def handler(signum, _frame):
        stop.set(f"interrupted by {signal.Signals(signum).name}", signum)

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("planfile", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@desired_state_option
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation (required without a terminal, unless PLANFILE is given).")
@click.option(
    "--allow-cluster-ops",
    is_flag=True,
    help="With --auto-approve and no PLANFILE: also run cluster operations (start, halt or switching of the package, "
    "dispatching a member). Without it such a plan is refused (exit 6) and nothing runs.",
)
@click.option("--parallelism", type=click.IntRange(1, 1024), help="Hosts worked on at once (default: access.parallelism).")
@click.option(
    "--lock-timeout",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for another apply's site lock before giving up (0: fail at once).",
)
@target_options
@accept_new_option
def apply(planfile, paths, auto_approve, allow_cluster_ops, parallelism, lock_timeout, targets, excludes, accept_new_host_keys) -> int:
    """Carry out the plan's actions, verify each on its host, and prove convergence.

    Without PLANFILE, probes the site under the site lock, shows the plan and asks for
    confirmation (on a terminal; elsewhere --auto-approve is required). With PLANFILE (from
    `csync plan --out`), applies exactly that plan: refused if made from another desired
    state; an action whose facts changed since is reported stale and not run.

    Cluster operations (starting, halting or changing the switching of the package,
    dispatching a member) run after a confirmation, or from a saved PLANFILE as it is; with
    --auto-approve and no PLANFILE they need --allow-cluster-ops, else nothing runs (exit 6).

    Exit 0 only when every action was done and verified and a fresh plan is empty.
    """
    from reconciler.apply.events import StopFlag
    from reconciler.apply.journal import Journal
    from reconciler.apply.lock import lease_seconds
    from reconciler.apply.run import ApplyOptions, run_apply
    from reconciler.driver.transport import Pool
    from reconciler.pipeline import git_commit_of
    from reconciler.plan.artefact import Plan

    can_confirm = sys.stdin.isatty()
    if planfile is None and not auto_approve and not can_confirm:
        raise click.UsageError("no terminal to confirm on: pass --auto-approve, or save a plan (csync plan --out FILE) and apply FILE")
    state = load_state(paths)
    if parallelism:
        state = state.model_copy(update={"access": state.access.model_copy(update={"parallelism": parallelism})})
    saved = Plan.from_json(planfile.read_text(encoding="utf-8"), source=str(planfile)) if planfile else None
    color = use_color()
    view = RichView(color, lock_timeout) if interactive(sys.stdout) else TextView(color, lock_timeout)

    def confirm(plan) -> bool:
        if auto_approve or planfile is not None:
            return True
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return click.confirm(f"Apply these {len(plan.actions)} action(s) to site {state.site}?", default=False)
        except (click.Abort, KeyboardInterrupt):
            return False
        finally:
            signal.signal(signal.SIGINT, previous)

    lease = lease_seconds()
    journal = Journal(str(uuid.uuid4()))
    stop = StopFlag()
    previous = _install_signals(stop)
    try:
        with Pool(state.access, accept_new_host_keys=accept_new_host_keys) as pool:
            options = ApplyOptions(
                lock_timeout=lock_timeout,
                lease=lease,
                targets=targets,
                excludes=excludes,
                git_commit=git_commit_of(list(paths) or [Path(DEFAULT_DESIRED_STATE)]) if saved is None else saved.git_commit,
                plan_source=str(planfile) if planfile else None,
                allow_cluster_ops=allow_cluster_ops or not auto_approve or planfile is not None,
            )
            report = run_apply(state, pool, saved_plan=saved, options=options, confirm=confirm, events=view, journal=journal, stop=stop)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        journal.close()
    if not report.plan.actions and report.plan.clean and report.final_plan is not None and report.final_plan.clean:
        if report.inventory and not report.inventory.error:
            click.echo(f"No changes to hosts; recorded the key files csync owns in the inventory ({report.inventory.node}:{report.inventory.path}).")
        return ExitCode.OK
    click.echo(f"Journal: {journal.path}")
    return report.exit_code


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("lock_id")
@desired_state_option
@click.option("--force", is_flag=True, help="Release the lock even though its lease is live (only if its apply is dead).")
@accept_new_option
def unlock(lock_id, paths, force, accept_new_host_keys) -> int:
    """Release the site lock LOCK_ID (printed by the apply that holds it).

    Without --force, only a lock whose lease has expired is released: a live lease means
    its apply is still renewing it. The lock is looked for on every master host.
    """
    from reconciler.apply.lock import session_runner
    from reconciler.apply.lock import unlock as release
    from reconciler.driver.transport import Pool

    state = load_state(paths)
    with Pool(state.access, accept_new_host_keys=accept_new_host_keys) as pool:
        runners = {h.name: session_runner(pool, h) for h in state.master_hosts}
        removed = release(state, lock_id, runners, force=force)
    for r in removed:
        click.echo(f"Released {r.describe()}")
    return ExitCode.OK


if __name__ == "__main__":
    # `python -m reconciler.cli.apply apply ...`: the main group with these commands on it
    from reconciler.cli.main import main

    for command in (apply, unlock):
        if command.name not in main.commands:
            main.add_command(command)
    main()
