"""Errors csync reports to users, and the exit codes they map to.

Every failure a user can cause or meet is one of these; the CLI prints ``str(error)``
and exits with ``error.exit_code``. Anything else escaping is a bug.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    ERROR = 1  # failed, did not converge, unreachable hosts, blocked actions
    CHANGES = 2  # plan --detailed-exitcode: the plan has changes
    INVALID = 3  # the desired state (or another input file) is invalid
    STALE = 4  # a saved plan no longer matches the desired state or the hosts
    LOCKED = 5  # another apply holds the site's lock
    REFUSED = 6  # apply --auto-approve of a plan with cluster operations, without --allow-cluster-ops
    USAGE = 64  # bad command line (click's own usage errors exit 2; see cli.py)
    INTERNAL = 70  # a bug in csync: an unexpected exception (EX_SOFTWARE); CSYNC_DEBUG=1 shows its traceback


class CsyncError(Exception):
    """Base of every error meant for the user."""

    exit_code = ExitCode.ERROR


class InvalidInput(CsyncError):
    """An input file (desired state, plan file, access file) is unusable."""

    exit_code = ExitCode.INVALID


class StalePlan(CsyncError):
    exit_code = ExitCode.STALE


class ClusterOpsRefused(CsyncError):
    """An unattended apply met cluster operations it was not allowed to run; nothing ran."""

    exit_code = ExitCode.REFUSED


class LockHeld(CsyncError):
    exit_code = ExitCode.LOCKED


class LockError(CsyncError):
    """The lock could not be taken, renewed or released for a reason other than another holder."""
