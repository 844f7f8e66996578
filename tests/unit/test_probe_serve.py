"""probe.sh's served mode (SERVE=1), run with the machine's /bin/sh as a host would run it: the
framing csync's transport reads (driver/transport.py, Session._serve), and a server that ends
on anything but a request. Outside an ssh session (no SSH_CONNECTION) the forwarder does not
kill its group: here the server ends when its input closes, like any shell loop."""

from __future__ import annotations

import os
import select
import subprocess
import time

from tests.unit.probes import client_probe


def script(tmp_path) -> bytes:
    cf = tmp_path / "cf"
    (cf / "ppkeys").mkdir(parents=True)
    (cf / "inputs").mkdir()
    (cf / "inputs" / "update.conf").write_text("control:\n")
    (cf / "ppkeys" / "localhost.priv").write_text("PRIVATE\n")
    return client_probe(cf, serve=True).encode()


def read_until(fd: int, marker: bytes, buf: bytearray, timeout: float = 20) -> bytes:
    deadline = time.monotonic() + timeout
    while marker not in buf:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {bytes(buf)!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the server ended before {marker!r}: {bytes(buf)!r}"
            buf += chunk
    end = buf.index(marker) + len(marker)
    got = bytes(buf[:end])
    del buf[:end]
    return got


def test_the_server_is_ready_then_answers_each_request_between_marks(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
    proc = subprocess.Popen(["/bin/sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    assert proc.stdin and proc.stdout and proc.stderr
    out, err = bytearray(), bytearray()
    try:
        proc.stdin.write(script(tmp_path))
        proc.stdin.flush()
        assert read_until(proc.stdout.fileno(), b"%%csync-ready\n", out) == b"%%csync-ready\n"
        for n in (1, 2, 17):
            proc.stdin.write(b"probe %d\n" % n)
            proc.stdin.flush()
            answer = read_until(proc.stdout.fileno(), b"\n%%%%csync-end %d 0\n" % n, out)
            assert answer.startswith(b'%%csync-got\n{"format":1,') and answer.count(b"\n") == 4, answer
            assert b"update.conf" in answer and b"PRIVATE" not in answer
            assert read_until(proc.stderr.fileno(), b"\n%%%%csync-end %d\n" % n, err) == b"\n%%%%csync-end %d\n" % n
        # anything but "probe DIGITS" ends the server (its status once the input closes, as
        # csync closes it on any answer but a probe's), and nothing runs
        proc.stdin.write(b"probe 3; rm -rf /\n")
        proc.stdin.close()
        assert proc.wait(20) == 64
        assert out == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_server_ends_when_its_input_closes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
    proc = subprocess.Popen(["/bin/sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(script(tmp_path))
        proc.stdin.flush()
        read_until(proc.stdout.fileno(), b"%%csync-ready\n", bytearray())
        proc.stdin.close()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
