"""`opsconsole report`: the support bundle holds what a ticket needs, privately, and says clearly when it cannot."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tarfile
from pathlib import Path


def opsconsole(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opsconsole", *args], capture_output=True, text=True, timeout=timeout)


def test_report_bundles_snapshot_env_xids_and_runs_with_diagnoses(tmp_path: Path) -> None:
    failed = json.loads(opsconsole("run", "selftest", "--lines", "3", "--job-error",
                                   "CUDA out of memory. Tried to allocate 4.00 GiB", "--foreground", "--json").stdout)
    ok = json.loads(opsconsole("run", "selftest", "--lines", "2", "--foreground", "--json").stdout)
    proc = opsconsole("report", "--simulate", "xid79-fell-off-bus", "--out", str(tmp_path), "--runs", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    paths = {k: Path(v) for k, v in json.loads(proc.stdout).items()}
    report = json.loads(paths["json"].read_text())

    assert {"gpu_lost", "xid"} <= {f["id"] for f in report["findings"]}
    assert 79 in [x["xid"] for x in report["xid_events"]]
    assert report["snapshot"]["gpus"][5]["state"] == "lost" and len(report["snapshot"]["gpus"]) == 8
    assert report["versions"]["driver"] and report["versions"]["torch"]
    runs = {r["id"]: r for r in report["runs"]}
    assert set(runs) == {failed["id"], ok["id"]}
    bad = runs[failed["id"]]
    assert bad["status"] == "failed" and "out of memory" in bad["error"]
    assert bad["diagnoses"] and bad["diagnoses"][0]["id"].startswith("cuda-oom")
    assert any("selftest line 3/3" in line for line in bad["log_tail"])

    markdown = paths["markdown"].read_text()
    for heading in ("## Findings", "## GPUs", "## CUDA environment and versions", "## Recent XIDs", "## Last 2 runs"):
        assert heading in markdown
    assert f"### {failed['id']} — failed" in markdown and "diagnosis **cuda-oom" in markdown
    with tarfile.open(paths["tar"]) as tar:
        assert sorted(Path(m.name).name for m in tar.getmembers()) == ["report.json", "report.md"]
    for path in (paths["json"], paths["markdown"], paths["tar"]):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths["json"].parent.stat().st_mode) == 0o700


def test_report_errors_are_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad_out = opsconsole("report", "--simulate", "healthy-8xh100", "--out", str(blocker / "sub"))
    assert bad_out.returncode == 3 and "--out" in bad_out.stderr and "Traceback" not in bad_out.stderr
    bad_python = opsconsole("report", "--python", str(tmp_path / "nope"), "--out", str(tmp_path))
    assert bad_python.returncode == 3 and "--python" in bad_python.stderr
    unknown = opsconsole("report", "--simulate", "no-such-box", "--out", str(tmp_path))
    assert unknown.returncode == 3 and "unknown scenario" in unknown.stderr


def _report(hostname: str = "gpu07") -> dict:
    return {"generated_at": 1796400000.0, "host": {"hostname": hostname}, "runs": [], "findings": []}


def test_the_bundle_goes_into_a_new_private_folder_never_through_a_planted_path(tmp_path: Path, monkeypatch) -> None:
    """In a shared --out, the names were predictable and symlinks followed: a planted symlink made
    report overwrite a root-owned file, and a pre-created folder kept its owner and modes."""
    from opsconsole import report as report_module

    monkeypatch.setattr(report_module, "to_markdown", lambda report: "# report\n")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    old_name = "opsconsole-report-gpu07-20261204-160000"  # the name the old code would have used
    (shared / f"{old_name}.tar.gz").symlink_to(victim)
    (shared / old_name).mkdir(mode=0o777)
    (shared / old_name / "report.json").symlink_to(victim)
    first = report_module.write_bundle(_report(), shared)
    second = report_module.write_bundle(_report(), shared)  # same second, same host: a new folder again
    assert victim.read_text() == "precious\n"
    assert first["json"].parent != second["json"].parent
    for paths in (first, second):
        folder = paths["json"].parent
        assert folder.name.startswith(old_name + "-") and not folder.is_symlink()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert json.loads(paths["json"].read_text())["host"]["hostname"] == "gpu07"
        assert not paths["tar"].is_symlink() and paths["tar"].name == folder.name + ".tar.gz"


def test_a_failed_write_leaves_no_half_bundle(tmp_path: Path, monkeypatch) -> None:
    from opsconsole import report as report_module

    monkeypatch.setattr(report_module, "to_markdown", lambda report: "# report\n")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_module.tarfile, "open", full_disk)
    try:
        report_module.write_bundle(_report(), tmp_path)
    except OSError as exc:
        assert exc.errno == 28
    else:
        raise AssertionError("the write should have failed")
    assert list(tmp_path.iterdir()) == []


def test_non_utf8_argv_does_not_break_later_reports(tmp_path: Path) -> None:
    """`--job-error $'\\xff'` made every later `report` fail with UnicodeEncodeError."""
    launched = subprocess.run([sys.executable.encode(), b"-m", b"opsconsole", b"run", b"selftest", b"--lines", b"1",
                               b"--job-error", b"bad \xff byte", b"--foreground", b"--json"], capture_output=True,
                              timeout=120)
    assert launched.returncode == 2, launched.stderr
    proc = opsconsole("report", "--simulate", "healthy-8xh100", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    paths = {k: Path(v) for k, v in json.loads(proc.stdout).items()}
    assert "bad \ufffd byte" in paths["markdown"].read_text(encoding="utf-8")
    assert "bad \ufffd byte" in json.dumps(json.loads(paths["json"].read_text(encoding="utf-8")), ensure_ascii=False)
