"""DSAU and Serviceguard facts that csync relies on, in one place.

Every value marked [ours] is a choice of csync's emulation, not documented by HP; a real
site that differs sets the desired state's `paths:` or `platform:` where those cover the value,
and is adapted here otherwise (see docs/DOMAIN-CHOICES.md).
"""

from __future__ import annotations

# --- Paths [doc] -----------------------------------------------------------------------
CFENGINE_DIR = "/var/opt/dsau/cfengine"
INPUTS_SUBDIR = "inputs"
PPKEYS_SUBDIR = "ppkeys"
STANDALONE_MASTER_INPUTS = "/var/opt/dsau/cfengine_master/inputs"
# The master inputs hold the master copy of update.conf, which clients' cfagent copies with
# the rest of the policy; csync's live cfagent check copies it (driver/commands.served_file).
UPDATE_CONF = "update.conf"
PACKAGE_FILES_DIR = "/etc/cmcluster/csync"
DISPATCHER = "/opt/dsau/bin/csync_dispatcher"
WIZARD = "/opt/dsau/sbin/csync_wizard"
CSSHSETUP = "/opt/dsau/bin/csshsetup"  # [ours] location

# Relative to the package mount point [doc]: the master's cfengine tree.
PACKAGE_MASTER_DIR = "dsau/cfengine_master"
PACKAGE_MASTER_INPUTS = f"{PACKAGE_MASTER_DIR}/inputs"
# The cluster key pair on the package filesystem [ours].
PACKAGE_CLUSTER_KEY_DIR = f"{PACKAGE_MASTER_DIR}/ppkeys"
# csync's own record of the addresses it has managed for this site (prune inventory) and its
# apply lock, kept on the master: the package filesystem, or the standalone master [ours].
PACKAGE_CSYNC_STATE = "dsau/csync"
STANDALONE_CSYNC_STATE = "/var/opt/dsau/csync"

# --- cfengine key files [doc/src] --------------------------------------------------------
OWN_PUBLIC_KEY = "localhost.pub"
OWN_PRIVATE_KEY = "localhost.priv"  # never read by csync
PEER_KEY_PREFIX = "root-"
PEER_KEY_SUFFIX = ".pub"
KEY_FILE_MODE = 0o644  # [ours] what cfkey leaves on a .pub file
PUBLIC_KEY_PEM_END = "-----END RSA PUBLIC KEY-----"


def peer_key_name(address: str) -> str:
    """File name under ppkeys/ that holds the key of the peer at ``address``."""
    return f"{PEER_KEY_PREFIX}{address}{PEER_KEY_SUFFIX}"


# cfengine's own commands (cfrun, cfagent) are run by name, these directories first [ours:
# DSAU's cfengine in /opt/dsau/sbin; the lab's emulations are in /usr/local/sbin]. The default
# of the desired state's platform.cfengine_path: a site sets its own there.
CFENGINE_PATH = "/opt/dsau/sbin:/usr/local/sbin:/usr/sbin"

# --- Serviceguard [doc] ------------------------------------------------------------------
# Serviceguard commands are run by name; these directories are searched first
# (HP-UX installs them in /usr/sbin; the lab in /usr/local/sbin; Serviceguard for Linux in
# $SGSBIN: /opt/cmcluster/bin on SUSE, /usr/local/cmcluster/bin on Red Hat). The default of the
# desired state's platform.serviceguard_path: a site sets its own there.
SERVICEGUARD_PATH = "/usr/sbin:/usr/local/sbin:/opt/cmcluster/bin:/usr/local/cmcluster/bin"
DISPATCHER_MEMBER_ADDED = "MEMBER_ADDED:"
# The -t preview of cmrunpkg, cmhaltpkg and cmmodpkg -e, and cmversion, which tells the
# release [doc: "Managing Serviceguard", 16th edition (A.11.19, March 2009), "Previewing the
# Effect of Cluster Changes"; the lab's cmversion prints A.11.20.00, its format is ours].
SERVICEGUARD_PREVIEW_SINCE = (11, 19)

# --- csync's probe program [ours] ---------------------------------------------------------
# The forced command of csync's plan identity (docs/SECURITY.md): installed by csync on every
# host, root's, mode 755, in a root-owned directory that no one else can write.
PROBE_PROGRAM_DIR = f"{STANDALONE_CSYNC_STATE}/bin"
PROBE_PROGRAM = f"{PROBE_PROGRAM_DIR}/csync-probe"
