"""Each isolation claim of the sandboxes, attacked for real on both backends."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from envs.sandbox import SandboxLimits

pytestmark = pytest.mark.slow


def test_agent_is_unprivileged(sandbox):
    result = sandbox.exec("id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status")
    lines = result.stdout.split()
    assert lines[0] == "1000"
    status = dict(zip(lines[1::2], lines[2::2], strict=True))
    assert status == {"CapEff:": "0" * 16, "CapBnd:": "0" * 16, "NoNewPrivs:": "1"}
    assert sandbox.exec("cat /etc/shadow").exit_code != 0
    assert sandbox.exec("chown 0 /workspace").exit_code != 0


def test_no_network_reaches_a_host_listener(sandbox):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    arrived: list[object] = []

    def accept() -> None:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                arrived.append(listener.accept())
                return
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    result = sandbox.exec(f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED", timeout=5)
    thread.join()
    listener.close()
    assert "CONNECTED" not in result.stdout
    assert result.exit_code != 0
    assert arrived == []
    interfaces = sandbox.exec("tail -n +3 /proc/net/dev | cut -d: -f1").stdout.split()
    assert interfaces == ["lo"]


def test_system_is_read_only(sandbox):
    for path in ("/etc/passwd", "/usr/bin/evil", "/bin/sh", "/root/x", "/x"):
        result = sandbox.exec(f"echo pwned >> {path}")
        assert result.exit_code != 0, path
    assert sandbox.exec("echo ok > /workspace/f && cat /workspace/f").stdout == "ok\n"


def test_host_files_are_invisible(sandbox):
    marker = uuid.uuid4().hex
    with tempfile.NamedTemporaryFile("w", prefix=f"host-{marker}-", delete=False) as handle:
        handle.write(marker)
    home_marker = Path.home() / f".distill-audit-{marker}"
    home_marker.write_text(marker)
    try:
        probe = " ".join(
            [handle.name, str(home_marker), str(Path(__file__).resolve()), str(Path.cwd())]
        )
        result = sandbox.exec(f"for p in {probe}; do test -e $p && echo SEEN $p; done; true")
        assert result.stdout == ""
        grep = sandbox.exec(f"grep -rl {marker} /tmp /root /home /workspace 2>/dev/null; true")
        assert grep.stdout == ""
        sandbox_passwd = sandbox.exec("cat /etc/passwd").stdout
        assert sandbox_passwd != Path("/etc/passwd").read_text()
        assert "agent:x:1000" in sandbox_passwd
    finally:
        Path(handle.name).unlink()
        home_marker.unlink()


def test_each_sandbox_has_a_fresh_workspace(backend, new_sandbox):
    first = new_sandbox()
    first.write_file("secret.txt", "from the first episode")
    second = new_sandbox()
    assert second.exec("ls -A /workspace").stdout == ""
    assert second.exec("test -e secret.txt").exit_code == 1
    first.close()
    third = new_sandbox()
    assert third.exec("ls -A /workspace").stdout == ""


def test_fork_bomb_is_contained(sandbox):
    outcome: list = []
    bomb = threading.Thread(
        target=lambda: outcome.append(sandbox.exec(":(){ :|:& };:; sleep 30", timeout=3))
    )
    bomb.start()
    time.sleep(1.5)
    host = subprocess.run(["sh", "-c", "echo host-ok"], capture_output=True, text=True, timeout=5)
    bomb.join()
    assert host.stdout == "host-ok\n"
    assert outcome[0].timed_out
    assert sandbox.exec("echo alive").stdout == "alive\n"
    left = sandbox.exec("ps -u agent -o comm=").stdout.split()
    assert set(left) == {"bash", "ps"} and len(left) == 3


def test_process_limit_caps_forks(new_sandbox):
    box = new_sandbox(limits=SandboxLimits(pids=32))
    result = box.exec("for i in $(seq 60); do sleep 5 & done; wait", timeout=10)
    assert "fork" in result.stderr or "Resource temporarily unavailable" in result.stderr


def test_memory_limit_kills_a_hog(new_sandbox):
    box = new_sandbox(limits=SandboxLimits(memory_mb=128))
    result = box.exec("head -c 600m /dev/zero | tail > /dev/null; echo rc=$?", timeout=30)
    assert "rc=0" not in result.stdout
    assert box.exec("echo alive").stdout == "alive\n"


def test_cpu_limit_throttles_two_busy_loops(new_sandbox):
    box = new_sandbox(limits=SandboxLimits(cpus=0.5))
    spin = "timeout 2 sh -c 'while :; do :; done'"
    result = box.exec(f"TIMEFORMAT=%U; time ( {spin} & {spin} & wait )", timeout=20)
    user_cpu = float(result.stderr.strip().splitlines()[-1])
    assert user_cpu < 1.6, result.stderr


def test_timeout_kills_the_whole_process_tree(sandbox):
    tag = str(3000 + uuid.uuid4().int % 900)
    result = sandbox.exec(
        f"sleep {tag} & setsid sleep {tag} & (sleep {tag} &) ; sleep {tag}", timeout=1
    )
    assert result.timed_out and result.exit_code == 124
    assert sandbox.exec("ps -u agent -o comm= | grep -c sleep; true").stdout.strip() == "0"
    assert _host_processes_running(f"sleep\0{tag}") == []


def _host_processes_running(cmdline: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_text().startswith(cmdline):
                found.append(entry.name)
        except OSError:
            continue
    return found


def test_output_cap_flags_truncation(new_sandbox):
    box = new_sandbox(limits=SandboxLimits(output_bytes=1000))
    result = box.exec("head -c 5000 /dev/zero | tr '\\0' a; head -c 3000 /dev/zero >&2")
    assert result.truncated
    assert result.stdout == "a" * 1000
    assert len(result.stderr) == 1000
    small = box.exec("echo short")
    assert not small.truncated and small.stdout == "short\n"
