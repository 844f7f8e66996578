"""The lab's cfengine 2 emulation against cfengine 2's own rules, through real lab hosts (real
sshd, real files, real RSA keys): cfrun's command line (src/cfrun.c CheckOptsAndInit and
ReadCfrunConf), its key lookup (PollServer, proto.c KeyAuthentication), cfservd's
(cfservd.c CheckStoreKey, HostnameKeys), and a member's extra address (lab up
--extra-addresses). One lab for the module: 2 members, 3 clients, with extra addresses;
each test starts from the fresh scenario.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.driver.transport import Pool
from reconciler.lab import Lab
from reconciler.lab.runtime import _listening
from reconciler.trust.live import CFRUN_BANNER, assess, without_cfrun_banners
from tests.conftest import require_lab_machine
from tests.lab.support import cfagent_copy

pytestmark = pytest.mark.lab

PP = f"{dsau.CFENGINE_DIR}/{dsau.PPKEYS_SUBDIR}"
NODE1, NODE1_LAN2, PKG, PKG_LAN2 = "127.0.10.1", "127.0.20.1", "127.0.10.10", "127.0.20.10"
CLIENT1, CLIENT2, CLIENT3 = "127.0.10.21", "127.0.10.22", "127.0.10.23"
QUESTION = "          Do you want to accept one on trust? (yes/no)\n\n--> "


@pytest.fixture(scope="module")
def module_lab(tmp_path_factory):
    require_lab_machine()
    lab = Lab(tmp_path_factory.mktemp("lab-cfengine"))
    lab.up(members=2, clients=3, scenario="fresh", extra_addresses=True)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def lab(module_lab):
    module_lab.reseed("fresh")
    return module_lab


def sh(lab: Lab, host: str, line: str, timeout: float = 60) -> str:
    """Run a shell line in ``host``; it must exit 0 (cfrun always does); its stdout, less
    cfrun's "Hailing" banners."""
    done = lab.exec(host, line, timeout=timeout)
    assert done.returncode == 0, f"{host}$ {line}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return without_cfrun_banners(done.stdout)


def test_each_polled_host_comes_after_cfengine_2s_hailing_banner(lab):
    out = lab.exec("node1", "cfrun").stdout.splitlines()
    banners = [(i, m.group(2)) for i, m in enumerate(map(CFRUN_BANNER.match, out)) if m]
    assert [h for _, h in banners][:2] == ["client1", "client2"]
    for i, host in banners:  # cfrun.hosts has maxchild 1: one child after the other, slot 0
        assert out[i] == f"cfrun(0):         .......... [ Hailing {host} ] .........." and out[i + 1] == f"cfrun {host}: ok"


def key(lab: Lab, host: str, name: str) -> bytes:
    return lab.host_path(host, f"{PP}/{name}").read_bytes()


# --- the command line -------------------------------------------------------------------------


def test_T_trusts_every_key_cfrun_lacks_and_so_writes_it(lab):
    sh(lab, "node1", f"rm {PP}/root-{CLIENT1}.pub")
    assert sh(lab, "node1", "cfrun -T client1") == "Accepting public key from client1\ncfrun client1: ok\n"
    stored = lab.host_path("node1", f"{PP}/root-{CLIENT1}.pub")
    assert stored.read_bytes() == key(lab, "client1", "localhost.pub")  # the key the client's cfservd sent
    assert stored.stat().st_mode & 0o777 == 0o600  # cfrun's umask is 077
    assert sh(lab, "node1", "cfrun client1") == "cfrun client1: ok\n"  # and it is used from now on

    # Options are matched on two characters: -T5 (a "timeout" to the eye) is -T too.
    sh(lab, "node1", f"rm {PP}/root-{CLIENT2}.pub")
    assert sh(lab, "node1", "cfrun -T5 client2") == "Accepting public key from client2\ncfrun client2: ok\n"
    assert key(lab, "node1", f"root-{CLIENT2}.pub") == key(lab, "client2", "localhost.pub")

    # -T never replaces a key on file: a wrong one still fails, and stays.
    sh(lab, "node1", f"cp {PP}/root-{CLIENT2}.pub {PP}/root-{CLIENT1}.pub")
    assert sh(lab, "node1", "cfrun -T client1") == (
        f"cfrun client1: Challenge response from server client1/{CLIENT1} was incorrect! [local {PP}/root-{CLIENT1}.pub mismatch]\n"
    )
    assert key(lab, "node1", f"root-{CLIENT1}.pub") == key(lab, "client2", "localhost.pub")


def test_without_T_cfrun_asks_and_reads_stdin_until_yes_or_no(lab):
    sh(lab, "node1", f"rm {PP}/root-{CLIENT1}.pub")
    warning = f"WARNING - You do not have a public key from host client1 = {CLIENT1}\n"
    assert sh(lab, "node1", "printf 'maybe\\nno\\n' | cfrun client1") == (
        f"{warning}{QUESTION}Please reply yes or no...(maybe)\n"
        f"cfrun client1: Not authorized to trust the server=client1's public key (trustkey=false) "
        f"[local {PP}/root-{CLIENT1}.pub missing]\n"
    )
    assert not lab.host_path("node1", f"{PP}/root-{CLIENT1}.pub").exists()
    assert sh(lab, "node1", "echo yes | cfrun client1") == f"{warning}{QUESTION}cfrun client1: ok\n"
    assert key(lab, "node1", f"root-{CLIENT1}.pub") == key(lab, "client1", "localhost.pub")

    # At end of input the answer is neither: it asks again, for ever.
    sh(lab, "node1", f"rm {PP}/root-{CLIENT1}.pub")
    start = time.monotonic()
    done = lab.exec("node1", "timeout 4 cfrun client1 </dev/null")
    assert done.returncode == 124 and time.monotonic() - start >= 4  # killed by timeout(1)
    assert without_cfrun_banners(done.stdout).startswith(f"{warning}{QUESTION}Please reply yes or no...()\nPlease reply yes or no...()\n")

    # Each child takes all the input there is for its own question: answers written in
    # advance answer the first question only.
    sh(lab, "node1", f"rm {PP}/root-{CLIENT2}.pub")
    done = lab.exec("node1", "printf 'no\\nno\\n' | timeout 4 cfrun client1 client2")
    assert done.returncode == 124
    lines = without_cfrun_banners(done.stdout).splitlines()
    assert any(line.startswith("--> cfrun client1: Not authorized") for line in lines)
    assert f"WARNING - You do not have a public key from host client2 = {CLIENT2}" in lines
    assert lines[-1].removeprefix("--> ") == "Please reply yes or no...()"


def test_only_hosts_of_the_hosts_file_are_polled(lab):
    assert sh(lab, "node1", "cat /var/opt/dsau/cfengine/inputs/cfrun.hosts").splitlines()[1:] == ["client1", "client2", "client3"]
    # Hosts named on the command line restrict the file's list, compared as written.
    assert sh(lab, "node1", f"cfrun client2 {CLIENT1} nosuchhost") == "cfrun client2: ok\n"
    assert sh(lab, "node1", "cfrun") == "cfrun client1: ok\ncfrun client2: ok\ncfrun client3: ok\n"
    # -f chooses the file; a name without '/' is read from the inputs ($CFINPUTS when set).
    sh(lab, "node1", f"printf '# by address\\nmaxchild = 4\\n{CLIENT3}\\n{CLIENT1} -- -K\\n' > /tmp/by-address")
    assert sorted(sh(lab, "node1", f"cfrun -f /tmp/by-address {CLIENT3} {CLIENT1}").splitlines()) == [f"cfrun {CLIENT1}: ok", f"cfrun {CLIENT3}: ok"]
    assert sh(lab, "node1", "CFINPUTS=/tmp cfrun -f by-address client1") == ""
    assert sh(lab, "node1", "cfrun -f by-address") == f"Unable to open {dsau.CFENGINE_DIR}/inputs/by-address\n"
    assert sh(lab, "node1", "cfrun -f").startswith("Error: No filename listed after -f option.\nusage: cfrun")
    assert sh(lab, "node1", "cfrun -t 5 client1").startswith("Error: Unknown option.\nusage: cfrun")  # no timeout option
    assert sh(lab, "node1", "cfrun -h").startswith("usage: cfrun")


# --- key lookup -------------------------------------------------------------------------------


def test_cfrun_looks_up_the_name_key_before_the_address_key(lab):
    stale = key(lab, "client2", "localhost.pub")
    lab.host_path("node1", f"{PP}/root-client1.pub").write_bytes(stale)  # a stale key under client1's name
    # With hostnamekeys, the name key is the one that authenticates: the stale name key
    # defeats the correct address key.
    sh(lab, "node1", "printf 'hostnamekeys = true\\nclient1\\n' > /tmp/names")
    assert sh(lab, "node1", "cfrun -f /tmp/names") == (
        f"cfrun client1: Challenge response from server client1/{CLIENT1} was incorrect! [local {PP}/root-client1.pub mismatch]\n"
    )
    # Without it (cfrun.hosts as the lab writes it), the address key authenticates...
    assert sh(lab, "node1", "cfrun client1") == "cfrun client1: ok\n"
    # ...but the name key still counts as "a key on file": with the address key gone, cfrun
    # neither asks nor trusts (even with -T), and fails.
    sh(lab, "node1", f"rm {PP}/root-{CLIENT1}.pub")
    refused = f"cfrun client1: Not authorized to trust the server=client1's public key (trustkey=false) [local {PP}/root-{CLIENT1}.pub missing]\n"
    assert sh(lab, "node1", "cfrun client1 </dev/null") == refused
    assert sh(lab, "node1", "cfrun -T client1") == refused
    assert not lab.host_path("node1", f"{PP}/root-{CLIENT1}.pub").exists()
    # A correct name key with hostnamekeys is enough on its own.
    lab.host_path("node1", f"{PP}/root-client1.pub").write_bytes(key(lab, "client1", "localhost.pub"))
    assert sh(lab, "node1", "cfrun -f /tmp/names") == "cfrun client1: ok\n"


def test_cfservd_with_hostname_keys_looks_up_the_callers_name(lab):
    conf = lab.host_path("client1", f"{dsau.CFENGINE_DIR}/inputs/cfservd.conf")
    conf.write_text(conf.read_text().replace("control:\n", "control:\n   HostnameKeys  = ( on )\n", 1))
    assert sh(lab, "node1", "cfrun client1") == f"cfrun client1: BAD: key could not be accepted on trust [remote {PP}/root-node1.pub missing]\n"
    lab.host_path("client1", f"{PP}/root-node1.pub").write_bytes(key(lab, "client1", "localhost.pub"))  # stale
    assert sh(lab, "node1", "cfrun client1") == f"cfrun client1: BAD: keys did not match [remote {PP}/root-node1.pub mismatch]\n"
    assert key(lab, "client1", f"root-{NODE1}.pub") == key(lab, "node1", "localhost.pub")  # the address key is right
    lab.host_path("client1", f"{PP}/root-node1.pub").write_bytes(key(lab, "node1", "localhost.pub"))
    assert sh(lab, "node1", "cfrun client1") == "cfrun client1: ok\n"
    assert sh(lab, "node2", "cfrun client2") == "cfrun client2: ok\n"  # client2's cfservd still uses addresses


# --- cfagent ----------------------------------------------------------------------------------

MASTER_INPUTS = f"/csync/{dsau.PACKAGE_MASTER_INPUTS}"


def policy(*copies: str) -> str:
    """An input file in the lab's grammar, as a printf argument: one copy line per argument."""
    return "control:\\n   actionsequence = ( copy )\\ncopy:\\n" + "".join(f"   {c}\\n" for c in copies)


def test_cfagent_takes_cfengine_2s_options_and_refuses_the_invented_one(lab):
    # src/cfagent.c CheckOpts: getopt_long; an unknown option prints Syntax() and exits 1
    for bad, said in (
        (f"--policy-server {PKG}", "cfagent: unrecognized option '--policy-server'"),
        ("-T", "cfagent: invalid option -- 'T'"),
        ("-f", "cfagent: option requires an argument -- 'f'"),
    ):
        done = lab.exec("client1", f"cfagent {bad}")
        assert (done.returncode, done.stderr) == (1, said + "\n"), bad
        assert done.stdout.startswith("GNU cfengine: A system configuration engine (cfagent)\n")
        assert "--file                    (-f)\n" in done.stdout and "--no-splay                (-q)\n" in done.stdout
    assert lab.exec("client1", "cfagent -h").returncode == 0
    assert lab.exec("client1", "cfagent -a").returncode == 2  # cfengine 2's, not emulated by the lab: said so
    # without -f, the update (update.conf's policyhost); -B stops after it
    assert sh(lab, "client1", "cfagent -q -K -B") == f"cfagent {PKG}: ok\n"
    assert sh(lab, "client1", "cfagent --no-splay --no-lock --inform") == f"cfagent {PKG}: ok\n"
    # -f skips the update: a missing file is no error (parse.c ParseInputFile), and -B with -f does nothing
    assert sh(lab, "client1", "cfagent -q -K -x -v -f /tmp/none.cf") == "(No file /tmp/none.cf)\n"
    sh(lab, "client1", f"printf '{policy(f'{MASTER_INPUTS}/update.conf dest=/root/got server={PKG}')}' > /tmp/in.cf")
    assert (
        sh(lab, "client1", "cfagent -B -f /tmp/in.cf; cfagent -p -f /tmp/in.cf; cfagent -k -f /tmp/in.cf; cfagent -n -f /tmp/in.cf") == f"cfagent {PKG}: ok\n"
    )
    assert not lab.host_path("client1", "/root/got").exists()  # -n read the file and wrote nothing
    # a name without '/' comes from $CFINPUTS (else the inputs directory)
    assert sh(lab, "client1", "CFINPUTS=/tmp cfagent --file in.cf") == f"cfagent {PKG}: ok\n"
    assert lab.host_path("client1", "/root/got").read_bytes() == lab.host_path("node1", f"{MASTER_INPUTS}/update.conf").read_bytes()


def test_cfagent_reads_a_minimal_grammar_and_any_other_input_is_an_error(lab):
    sh(
        lab,
        "client1",
        f"printf '{policy(f'{MASTER_INPUTS}/update.conf dest=/root/got', f'server={PKG} trustkey=false encrypt=true mode=0600 type=checksum')}' > /tmp/ok.cf",
    )
    assert sh(lab, "client1", "cfagent -f /tmp/ok.cf") == f"cfagent {PKG}: ok\n"  # an entry may go on over lines
    assert lab.host_path("client1", "/root/got").stat().st_mode & 0o777 == 0o600
    for text, said in (
        ("files:\\n   /tmp mode=644\\n", "1: the section files: is not emulated by the lab (control: and copy: are)"),
        ("control:\\n   actionsequence = ( copy tidy )\\n", "2: the action tidy is not emulated by the lab (copy is)"),
        (
            policy(f"/etc/motd dest=/tmp/m server={PKG} owner=root"),
            "4: the copy attribute owner is not emulated by the lab (dest, server, trustkey, encrypt, mode, type are)",
        ),
        (policy("$(master)/update.conf dest=/tmp/m"), "4: variables are not emulated by the lab"),
    ):
        sh(lab, "client1", f"printf '{text}' > /tmp/bad.cf")
        done = lab.exec("client1", "cfagent -f /tmp/bad.cf")
        assert (done.returncode, done.stdout, done.stderr) == (1, "", f"cf:cfengine:client1:/tmp/bad.cf:{said} \n"), text


def test_cfagent_copies_only_what_the_masters_cfservd_admits(lab):
    def copy(source: str, dest: str = "/root/got", server: str = PKG, extra: str = "") -> str:
        sh(lab, "client1", f"rm -f {dest}; printf '{policy(f'{source} dest={dest} server={server} {extra}')}' > /tmp/c.cf")
        return sh(lab, "client1", "cfagent -q -K -f /tmp/c.cf")

    assert copy(f"{MASTER_INPUTS}/cf.motd") == f"cfagent {PKG}: ok\n"
    assert lab.host_path("client1", "/root/got").read_bytes() == lab.host_path("node1", f"{MASTER_INPUTS}/cf.motd").read_bytes()
    refused = "BAD: Unspecified server refusal (see verbose server output)"
    assert copy("/etc/hostname") == f"cfagent {PKG}: {refused} [remote /etc/hostname denied]\n"  # outside the master inputs
    priv = f"/csync/{dsau.PACKAGE_CLUSTER_KEY_DIR}/localhost.priv"
    assert copy(f"{MASTER_INPUTS}/../ppkeys/localhost.priv") == f"cfagent {PKG}: {refused} [remote {priv} denied]\n"
    sh(lab, "node1", f"ln -s {priv} {MASTER_INPUTS}/key")  # a link out of the inputs is refused too
    assert copy(f"{MASTER_INPUTS}/key") == f"cfagent {PKG}: {refused} [remote {MASTER_INPUTS}/key denied]\n"
    assert copy(f"{MASTER_INPUTS}/nothing") == f"cfagent {PKG}: BAD: unable to stat file {MASTER_INPUTS}/nothing [remote {MASTER_INPUTS}/nothing missing]\n"
    assert not lab.host_path("client1", "/root/got").exists()
    # cfservd.conf's admit rules grant it: without the master inputs' line, nothing is served
    conf = lab.host_path("node1", f"{dsau.CFENGINE_DIR}/inputs/cfservd.conf")
    conf.write_text("".join(line for line in conf.read_text().splitlines(keepends=True) if not line.strip().startswith(MASTER_INPUTS)))
    assert copy(f"{MASTER_INPUTS}/update.conf") == f"cfagent {PKG}: {refused} [remote {MASTER_INPUTS}/update.conf denied]\n"
    # a member that does not run the package has no master inputs to serve
    assert copy(f"{MASTER_INPUTS}/update.conf", server="127.0.10.2") == (
        f"cfagent 127.0.10.2: BAD: unable to stat file {MASTER_INPUTS}/update.conf [remote {MASTER_INPUTS}/update.conf missing]\n"
    )
    # trustkey=false (the default) never trusts a missing key; trustkey=true does, and saves it
    sh(lab, "client1", f"rm {PP}/root-127.0.10.2.pub")
    assert copy(f"{MASTER_INPUTS}/update.conf", server="127.0.10.2") == (
        f"cfagent 127.0.10.2: Key-authentication for 127.0.10.2 failed [local {PP}/root-127.0.10.2.pub missing]\n"
    )
    assert not lab.host_path("client1", f"{PP}/root-127.0.10.2.pub").exists()
    copy(f"{MASTER_INPUTS}/update.conf", server="127.0.10.2", extra="trustkey=true")
    assert key(lab, "client1", "root-127.0.10.2.pub") == key(lab, "node2", "localhost.pub")


# --- several addresses per host ---------------------------------------------------------------


def test_extra_addresses_are_in_the_labs_api_status_and_desired_state(lab):
    hosts = {h.name: h for h in lab.hosts}
    assert hosts["node1"].extra_addresses == (NODE1_LAN2,) and hosts["node2"].extra_addresses == ("127.0.20.2",)
    assert hosts["client1"].extra_addresses == ()
    assert lab.package["extra_addresses"] == [PKG_LAN2] and PKG_LAN2 in lab.addresses
    done = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "lab", "status", "--format", "json", "--dir", str(lab.dir)], capture_output=True, text=True, timeout=60
    )
    status = json.loads(done.stdout)
    assert status["package"]["extra_addresses"] == [PKG_LAN2]
    assert {h["name"]: h["extra_addresses"] for h in status["hosts"]}["node1"] == [NODE1_LAN2]
    assert NODE1_LAN2 in _listening(lab.port)  # the member's sshd (and so its cfservd) listens there too
    assert f"{NODE1_LAN2}\tnode1-lan2" in sh(lab, "client1", "cat /etc/hosts")
    state = load_desired_state([lab.desired_state_path])  # the lab declares them (issue 16)
    assert {m.name: m.extra_addresses for m in state.members} == {"node1": [NODE1_LAN2], "node2": ["127.0.20.2"]}
    assert state.package.extra_addresses == [PKG_LAN2]


def test_cfrun_from_a_members_extra_address_needs_that_address_key_on_the_client(lab):
    missing = f"cfrun client1: BAD: key could not be accepted on trust [remote {PP}/root-{NODE1_LAN2}.pub missing]\n"
    assert sh(lab, "node1", "cfrun client1") == "cfrun client1: ok\n"  # from its main address
    assert sh(lab, "node1", f"CSYNC_LAB_SOURCE_ADDRESS={NODE1_LAN2} cfrun client1") == missing  # routing picks lan2
    sh(lab, "node1", f"printf 'bindtointerface = {NODE1_LAN2}\\nclient1\\n' > /tmp/lan2")
    assert sh(lab, "node1", "cfrun -f /tmp/lan2") == missing  # cfrun.hosts' bindtointerface
    # bindtointerface naming an address the host does not have is ignored (bind() fails)
    sh(lab, "node1", "printf 'bindtointerface = 127.0.20.2\\nclient1\\n' > /tmp/other")
    assert sh(lab, "node1", "cfrun -f /tmp/other") == "cfrun client1: ok\n"
    # The cluster key under the extra address, on the client, is what it takes.
    sh(lab, "client1", f"cp {PP}/root-{NODE1}.pub {PP}/root-{NODE1_LAN2}.pub")
    assert sh(lab, "node1", "cfrun -f /tmp/lan2") == "cfrun client1: ok\n"
    # cfagent's copy from the package's extra address needs root-<that address>.pub likewise.
    refused = f"cfagent {PKG_LAN2}: Key-authentication for {PKG_LAN2} failed [local {PP}/root-{PKG_LAN2}.pub missing]\n"
    assert cfagent_copy(lab, "client2", PKG_LAN2) == (refused, False)
    sh(lab, "client2", f"cp {PP}/root-{PKG}.pub {PP}/root-{PKG_LAN2}.pub")
    assert cfagent_copy(lab, "client2", PKG_LAN2) == (f"cfagent {PKG_LAN2}: ok\n", True)


# --- csync's live check with the real command line --------------------------------------------


def test_csync_trust_live_uses_cfruns_real_syntax_and_a_missing_key_fails_fast(lab):
    sh(lab, "node1", f"rm {PP}/root-{CLIENT2}.pub; echo junk > {PP}/root-{CLIENT3}.pub")
    before = {h.name: sorted(p.name for p in lab.host_path(h.name, PP).iterdir()) for h in lab.hosts}
    state = load_desired_state([lab.desired_state_path])
    start = time.monotonic()
    with Pool(state.access) as pool:
        view = assess(state, pool, live=True)
    assert time.monotonic() - start < 60  # no question left waiting for an answer
    assert view.live.errors == () and view.disagreements == ()
    assert view.live.cfrun["node1"]["client2"].path == f"{PP}/root-{CLIENT2}.pub"
    assert (view.live.cfrun["node1"]["client3"].where, view.live.cfrun["node1"]["client3"].detail) == ("local", "unreadable")
    assert view.live.cfrun["node2"]["client2"].ok and view.live.cfagent["client1"].ok
    after = {h.name: sorted(p.name for p in lab.host_path(h.name, PP).iterdir()) for h in lab.hosts}
    assert after == before  # the check wrote no key anywhere
    assert lab.exec("node1", "ls /tmp/csync-cfrun.* 2>/dev/null").stdout == ""  # its hosts file is gone
