"""Security rules: trusted playbook commands (argv only, timeouts, shown first), private state,
--readonly, and no network listener."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from opsconsole.errors import ConfigError
from opsconsole.playbooks.commands import run_command
from opsconsole.playbooks.loader import load_playbook_file
from opsconsole.runs import RunStore

COMMAND_PLAYBOOK = "id: {id}\ntitle: T\nsteps:\n  - id: a\n    title: A\n    command: {command}\n"


def opsconsole(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opsconsole", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def write_playbook(directory: Path, pid: str, command: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pid}.yaml"
    path.write_text(COMMAND_PLAYBOOK.format(id=pid, command=command))
    return path


def test_command_steps_load_only_from_trusted_dirs(tmp_path: Path) -> None:
    untrusted = write_playbook(Path(os.environ["XDG_CONFIG_HOME"]) / "opsconsole" / "playbooks", "mine", "[df, -h]")
    with pytest.raises(ConfigError, match=r"only allowed in trusted playbooks") as refused:
        load_playbook_file(untrusted, trusted=False)
    assert f"{untrusted}:6" in str(refused.value)
    listed = opsconsole("playbook", "list")
    assert "mine.yaml:6" in listed.stdout + listed.stderr and "trusted" in listed.stdout + listed.stderr
    assert load_playbook_file(untrusted, trusted=True).steps[0].argv == ("df", "-h")


@pytest.mark.parametrize(("command", "why"), [
    ("'df -h; rm -rf /'", "no shell"),                 # a shell string, not an argv
    ("[rm, -rf, /tmp/x]", "allow-list"),                # not a read-only diagnostic
    ("[nvidia-smi, -r]", "not an allowed read-only argument"),  # GPU reset
    ("[sh, -c, 'nvidia-smi']", "allow-list"),
])
def test_commands_are_read_only_argv_even_when_trusted(tmp_path: Path, command: str, why: str) -> None:
    path = write_playbook(tmp_path, "p", command)
    with pytest.raises(ConfigError, match=why):
        load_playbook_file(path, trusted=True)


def test_a_command_that_hangs_is_stopped_by_its_timeout(monkeypatch) -> None:
    from opsconsole.playbooks import commands

    # no allowed diagnostic reliably hangs: allow `sleep N` for this test only
    monkeypatch.setitem(commands.SHAPES, "sleep", commands.shape(positional=r"\d+"))
    started = time.monotonic()
    result = run_command(("sleep", "30"), timeout=0.5, failure_status="fail")
    assert time.monotonic() - started < 5
    assert result.status == "error" and "timed out" in result.summary


def test_commands_are_shown_before_they_run() -> None:
    dry = opsconsole("playbook", "run", "first-time-box-check", "--dry-run")
    assert re.search(r"nvidia-smi command: nvidia-smi -L\s+\(timeout \d+ s\)", dry.stdout), dry.stdout


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_dir_run_dirs_and_registry_are_private() -> None:
    run = json.loads(opsconsole("run", "selftest", "--lines", "1", "--foreground", "--json").stdout)
    store = RunStore()
    run_dir = store.runs_dir / run["id"]
    for directory in (store.root, store.runs_dir, run_dir):
        assert _mode(directory) == 0o700, directory
    for private in (store.path, run_dir / "cmd.json", run_dir / "result.json"):
        assert _mode(private) & 0o077 == 0, (private, oct(_mode(private)))


@pytest.mark.parametrize("how", ["flag", "env"])
def test_readonly_refuses_launch_stop_remove_and_bench(how: str) -> None:
    run = json.loads(opsconsole("run", "selftest", "--lines", "200", "--interval", "0.05", "--json").stdout)
    env = dict(os.environ, OPSCONSOLE_READONLY="1") if how == "env" else None
    flag = ["--readonly"] if how == "flag" else []
    try:
        for argv in (["run", "selftest", "--lines", "1"], ["runs", "stop", run["id"]], ["runs", "rm", run["id"]],
                     ["bench", "--device", "cpu"]):
            refused = opsconsole(*flag, *argv, env=env)
            assert refused.returncode == 3, (argv, refused.stdout, refused.stderr)
            assert "read-only" in refused.stderr and "Traceback" not in refused.stderr
        assert len(json.loads(opsconsole("runs", "list", "--json").stdout)) == 1  # nothing was launched
        assert opsconsole(*flag, "runs", "show", run["id"], env=env).returncode == 0  # looking is allowed
    finally:
        opsconsole("runs", "stop", run["id"], "--grace", "2")


def _listening(pid: int) -> list:
    try:
        proc = psutil.Process(pid)
        conns = proc.net_connections(kind="inet") if hasattr(proc, "net_connections") else proc.connections("inet")
    except psutil.NoSuchProcess:
        return []
    return [c for c in conns if c.status == psutil.CONN_LISTEN or (c.type == 2 and c.laddr)]  # TCP listen / bound UDP


def test_no_network_listener_during_a_run() -> None:
    console = subprocess.Popen([sys.executable, "-m", "opsconsole", "run", "selftest", "--lines", "100", "--interval",
                                "0.05", "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        run_id = re.search(r"run (\S+) started", console.stderr.readline()).group(1)
        pids_file = RunStore().runs_dir / run_id / "pids.json"
        deadline = time.monotonic() + 20
        while not pids_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = json.loads(pids_file.read_text())
        watched = {console.pid, pids["pid"], pids.get("supervisor_pid") or pids["pid"]}
        assert all(psutil.pid_exists(p) for p in watched)
        assert {p: _listening(p) for p in watched} == {p: [] for p in watched}
    finally:
        console.wait(timeout=60)
