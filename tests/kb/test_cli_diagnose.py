"""`opsconsole diagnose` and `opsconsole kb`: the JSON contract and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from opsconsole.cli import main

OOM = "step 3\nRuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)\n"


def _log(tmp_path: Path, text: str) -> str:
    path = tmp_path / "run.log"
    path.write_text(text)
    return str(path)


def test_json_contract_and_exit_0(tmp_path, capsys) -> None:
    assert main(["diagnose", _log(tmp_path, OOM), "--json", "--top", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"matches", "lines_scanned"} and data["lines_scanned"] == 2
    assert 1 <= len(data["matches"]) <= 2
    first = data["matches"][0]
    assert set(first) == {"id", "category", "title", "score", "evidence", "playbook"}
    assert first["category"] == "cuda_oom" and first["playbook"] == "cuda-oom"
    assert first["evidence"][0] == {"line": 2, "text": OOM.splitlines()[1]}


def test_no_match_is_exit_1_with_empty_list(tmp_path, capsys) -> None:
    assert main(["diagnose", _log(tmp_path, "all good\n"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"matches": [], "lines_scanned": 1}


def test_empty_log_says_so(tmp_path, capsys) -> None:
    assert main(["diagnose", _log(tmp_path, "")]) == 1
    assert "empty" in capsys.readouterr().out


def test_missing_file_and_bad_flags_are_usage_errors(tmp_path, capsys) -> None:
    assert main(["diagnose", str(tmp_path / "nope.log")]) == 3
    assert "nope.log: no such file" in capsys.readouterr().err
    assert main(["diagnose", _log(tmp_path, OOM), "--top", "0"]) == 3
    assert main(["diagnose", str(tmp_path)]) == 3


def test_rich_output_shows_cause_evidence_fix_and_playbook(tmp_path, capsys) -> None:
    assert main(["diagnose", _log(tmp_path, OOM)]) == 0
    shown = capsys.readouterr().out
    assert "cuda-oom-batch-too-large" in shown and "Tried to allocate" in shown
    assert "fix" in shown and "opsconsole playbook run cuda-oom" in shown


def test_stdin(monkeypatch, capsys) -> None:
    import io
    import sys

    fake = io.TextIOWrapper(io.BytesIO(b"NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus.\n"))
    monkeypatch.setattr(sys, "stdin", fake)
    assert main(["diagnose", "-", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["matches"][0]["id"] == "gpu-fallen-off-bus"


def test_kb_list_show_search(capsys) -> None:
    assert main(["kb", "list", "--category", "nan_inf", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed and {e["category"] for e in listed} == {"nan_inf"}
    assert main(["kb", "list", "--category", "nope"]) == 3
    capsys.readouterr()
    assert main(["kb", "show", "gated-model"]) == 0
    assert "hf auth login" in capsys.readouterr().out
    assert main(["kb", "show", "gated-modle"]) == 3
    assert "did you mean gated-model" in capsys.readouterr().err
    assert main(["kb", "search", "shared", "memory", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "dataloader-shm"


def test_run_playbook_runs_the_top_matchs_playbook_on_the_log(tmp_path, capsys) -> None:
    code = main(["diagnose", _log(tmp_path, OOM), "--run-playbook", "--simulate", "healthy-8xh100"])
    shown = capsys.readouterr().out
    assert "playbook cuda-oom" in shown and "Verdict" in shown
    assert code in (0, 1, 2)  # the playbook's verdict, not a usage error
    assert main(["diagnose", _log(tmp_path, OOM), "--run-playbook", "--json"]) == 3


def test_devices_and_unreadable_files_are_refused_not_read_forever(capsys) -> None:
    """/dev/zero never ends and /proc/self/mem fails with EIO: both get a one-line exit 3."""
    assert main(["diagnose", "/dev/zero"]) == 3
    assert "/dev/zero is a device" in capsys.readouterr().err
    assert main(["diagnose", "/proc/self/mem"]) == 3
    message = capsys.readouterr().err
    assert "/proc/self/mem" in message and "read failed after 0 bytes" in message
    assert "Traceback" not in message


def test_a_read_error_midway_diagnoses_what_was_read(tmp_path, monkeypatch, capsys) -> None:
    """A failing disk: the part read before the error is still diagnosed, with a warning."""
    import io

    from opsconsole.kb import matcher as matcher_module

    class FailingDisk(io.FileIO):
        def read(self, size=-1):
            if self.tell():
                raise OSError(5, "Input/output error")
            return super().read(size)

    path = _log(tmp_path, OOM)
    monkeypatch.setattr(matcher_module, "open", lambda name, mode="r": FailingDisk(name), raising=False)
    assert main(["diagnose", path, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["matches"][0]["category"] == "cuda_oom"
    assert f"{path}: read failed after {len(OOM)} bytes (Input/output error)" in captured.err


def test_kb_check_and_playbook_show_have_json(tmp_path, monkeypatch, capsys) -> None:
    assert main(["kb", "check", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["entries"] >= 60 and data["problems"] == []
    assert main(["playbook", "show", "gpu-health", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == "gpu-health" and shown["trusted"] is True
    assert "throttle" in [s["id"] for s in shown["steps"]] and shown["conclusion"][-1]["when"] is None
    bad = tmp_path / "kb"
    bad.mkdir()
    (bad / "broken.md").write_text("---\nid: Bad Id\n---\nbody\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "opsconsole").mkdir()
    (tmp_path / "opsconsole" / "config.toml").write_text(f"extra_kb_dirs = [{str(bad)!r}]\n")
    assert main(["kb", "check", "--json"]) == 3
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert len(problems) == 1 and problems[0]["path"].endswith("broken.md") and problems[0]["line"]
