"""The lab: an emulated DSAU site of real sshd hosts on 127.0.0.0/8 (docs/LAB.md)."""

from reconciler.lab.runtime import Hosts, Lab, LabError, LabStatus, check_machine
from reconciler.lab.topology import LabHost

__all__ = ["Hosts", "Lab", "LabError", "LabHost", "LabStatus", "check_machine"]
