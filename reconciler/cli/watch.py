"""`csync watch` (registered on the main group by reconciler/cli/main.py): continuous
reconciliation in the foreground, with metrics.

The loop is reconciler.watch.loop's and runs on a thread of its own; this thread owns the
signals (SIGTERM and SIGINT stop, SIGHUP reloads), the metrics server, and the stop: a heal
is given a moment to finish (it starts no new action and releases the site lock), then every
SSH session is closed (which ends a probe still waiting on a hung host; a cut cycle reports
nothing), the HTTP server stops, and the command exits 0, within 5 seconds of the signal.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import click

from reconciler.cli.main import DEFAULT_DESIRED_STATE, accept_new_option, desired_state_option, identity_option, load_state, read_identity
from reconciler.errors import ExitCode

# After a stop signal: a heal may finish for this long, then the sessions are closed under
# whatever still runs, which has this much more; the process is gone within 5 s of the signal.
STOP_GRACE_SECONDS = 2.5
STOP_AFTER_CLOSE_SECONDS = 1.5

WATCH_EXIT_CODES = f"""
\b
Exit codes:
  {ExitCode.OK}   stopped by SIGTERM or SIGINT (sessions closed, metrics server stopped)
  {ExitCode.ERROR}   could not start (the metrics address is taken, say)
  {ExitCode.INVALID}   the desired state is invalid at start (later, an invalid edit is logged and the last valid state kept)
  {ExitCode.USAGE}  bad command line
"""


def _metrics_address(ctx, param, value: str) -> str:
    from reconciler.watch.metrics import parse_address

    try:
        parse_address(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


@click.command(epilog=WATCH_EXIT_CODES)
@desired_state_option
@click.option(
    "--interval",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds from the start of one cycle to the start of the next.",
)
@click.option(
    "--metrics-address",
    default="127.0.0.1:9108",
    show_default=True,
    callback=_metrics_address,
    metavar="HOST:PORT",
    help="Serve /metrics (Prometheus) and /healthz here; port 0 picks a free port (the watch-started line says which).",
)
@click.option(
    "--heal",
    is_flag=True,
    help="Apply a cycle's plan when it holds key actions only, under the site lock (never while another apply holds it), "
    "journaled like any apply. Never cluster operations.",
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="One line per event: logfmt text, or JSON lines.")
@accept_new_option
@identity_option
def watch(paths, interval, metrics_address, heal, log_format, accept_new_host_keys, identity) -> int:
    """Reconcile continuously: probe the site every --interval over SSH sessions kept open,
    log each change (drift appeared or resolved, host lost or back, failover readiness),
    and export Prometheus metrics.

    Runs in the foreground until SIGTERM or SIGINT. The desired state is read again when its
    files change or on SIGHUP; an invalid edit is logged (file:line:col) and the last valid
    state kept. Nothing is changed on a host unless --heal is given.
    """
    from reconciler.apply.events import StopFlag
    from reconciler.watch.log import EventLog
    from reconciler.watch.loop import Watch, WatchOptions
    from reconciler.watch.metrics import MetricsServer, WatchMetrics
    from reconciler.watch.source import DesiredSource

    source = DesiredSource(list(paths) or [Path(DEFAULT_DESIRED_STATE)], load_state)
    loaded = source.load()  # invalid at start: no last valid state to keep, exit 3
    read_identity(loaded.state, identity)  # --identity plan without a plan identity: refused now
    log = EventLog(sys.stdout, log_format)
    metrics = WatchMetrics()
    stop = StopFlag()
    the_watch = Watch(
        source,
        loaded,
        WatchOptions(interval=interval, heal=heal, accept_new_host_keys=accept_new_host_keys),
        log=log,
        metrics=metrics,
        identity_of=lambda state: read_identity(state, identity),
        stop=stop,
    )
    try:
        server = MetricsServer(metrics, metrics_address, the_watch.health).start()
    except Exception:
        the_watch.close()
        raise
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda s, _f: the_watch.request_stop(f"stopped by {signal.Signals(s).name}", s)),
        signal.SIGINT: signal.signal(signal.SIGINT, lambda s, _f: the_watch.request_stop(f"stopped by {signal.Signals(s).name}", s)),
        signal.SIGHUP: signal.signal(signal.SIGHUP, lambda _s, _f: the_watch.request_reload()),
    }
    state = loaded.state
    log.emit(
        "watch-started",
        site=state.site,
        hosts=len(state.all_hosts),
        interval=interval,
        heal=heal,
        identity=the_watch.pool.identity,
        metrics=f"http://{server.address}/metrics",
        digest=loaded.digest,
        commit=loaded.commit,
        pid=os.getpid(),
    )
    loop = threading.Thread(target=the_watch.run, name="csync-watch", daemon=True)
    loop.start()
    try:
        while loop.is_alive() and not stop.is_set():
            loop.join(0.2)
        stopped = time.monotonic()
        # a heal stops starting actions and releases the site lock: give it the time to;
        # a probe cycle has nothing to finish (its facts would be thrown away)
        while loop.is_alive() and the_watch.healing and time.monotonic() - stopped < STOP_GRACE_SECONDS:
            loop.join(0.1)
        loop.join(0.2)
        the_watch.close()  # ends what still waits on a host
        deadline = stopped + STOP_GRACE_SECONDS + STOP_AFTER_CLOSE_SECONDS
        loop.join(max(0.0, deadline - time.monotonic()))
    finally:
        server.stop()
        the_watch.close()
        for s, h in previous.items():
            signal.signal(s, h)
    # threads the interpreter would wait for at exit: probes and handshakes still blocked on a host
    lingering = [t for t in threading.enumerate() if t is not threading.current_thread() and (t is loop or not t.daemon)]
    for t in lingering:
        t.join(max(0.0, deadline - time.monotonic()))
    unfinished = [t.name for t in lingering if t.is_alive()]
    log.emit("watch-stopped", reason=stop.reason, cycles=the_watch.cycles, unfinished=unfinished or None)
    if unfinished:
        # the sessions are closed and the log is flushed: leave without waiting for them
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(ExitCode.OK)
    return ExitCode.OK
