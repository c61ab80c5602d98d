"""The persistent shell protocol and the `Sandbox` lifecycle, on both backends."""

from __future__ import annotations

import pytest

from envs.sandbox import SandboxClosedError, SandboxCrashedError, get_sandbox


def test_exit_codes_and_separate_streams(sandbox):
    result = sandbox.exec("echo out; echo err >&2; exit 7")
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert not result.timed_out and not result.truncated


def test_output_without_trailing_newline_is_exact(sandbox):
    assert sandbox.exec("printf 'a\\nb'").stdout == "a\nb"
    assert sandbox.exec("printf ''").stdout == ""


def test_multiline_and_quoted_commands(sandbox):
    result = sandbox.exec("x='a b'\nfor w in $x; do\n  echo \"[$w]\"\ndone")
    assert result.stdout == "[a]\n[b]\n"


def test_each_command_starts_fresh_in_workspace(sandbox):
    sandbox.exec("cd /tmp; export FOO=1; mkdir -p d")
    assert sandbox.exec("pwd; echo ${FOO:-unset}").stdout == "/workspace\nunset\n"


def test_files_persist_between_commands(sandbox):
    sandbox.write_file("notes/a.txt", "line1\nline2\n")
    assert sandbox.exec("wc -l < notes/a.txt").stdout.strip() == "2"
    assert sandbox.read_file("notes/a.txt") == "line1\nline2\n"
    sandbox.write_file("run.sh", "#!/bin/sh\necho ran\n", mode=0o750)
    assert sandbox.exec("stat -c %a run.sh && ./run.sh").stdout == "750\nran\n"


def test_stdin_is_closed_and_exit_does_not_kill_the_shell(sandbox):
    assert sandbox.exec("cat").stdout == ""
    assert sandbox.exec("exit 3").exit_code == 3
    assert sandbox.exec("echo still-here").stdout == "still-here\n"


def test_binary_output_is_decoded_with_replacement(sandbox):
    result = sandbox.exec("printf '\\377ok'")
    assert result.stdout.endswith("ok") and "\ufffd" in result.stdout


def test_read_missing_file_raises(sandbox):
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("nope.txt")


def test_nul_byte_and_bad_timeout_are_rejected(sandbox):
    with pytest.raises(ValueError):
        sandbox.exec("echo a\0b")
    with pytest.raises(ValueError):
        sandbox.exec("true", timeout=0)


def test_lifecycle(backend):
    box = get_sandbox(backend)
    with pytest.raises(SandboxClosedError):
        box.exec("true")
    box.start()
    assert box.exec("echo hi").stdout == "hi\n"
    box.close()
    box.close()
    with pytest.raises(SandboxClosedError):
        box.exec("true")


def test_killing_the_shell_is_reported(sandbox):
    with pytest.raises(SandboxCrashedError):
        sandbox.exec("kill -9 $$; sleep 1", timeout=5)


def test_every_command_after_the_shell_died_is_a_crash_not_a_bare_eof(sandbox):
    """An agent that kills its own shell (`kill -KILL -1`) leaves a sandbox whose later
    commands (the next step, the task check) each raise `SandboxCrashedError`, which the
    environments turn into an error observation, never an internal error of the audit."""
    with pytest.raises(SandboxCrashedError):
        sandbox.exec("kill -KILL -1", timeout=5)
    for _ in range(3):
        with pytest.raises(SandboxCrashedError, match="sandbox shell exited"):
            sandbox.exec("true", timeout=5)


def test_unknown_backend_lists_known_ones():
    with pytest.raises(ValueError, match="bwrap, docker"):
        get_sandbox("podman")
