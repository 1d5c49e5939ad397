"""The engine: step events, `when:` branching, manual steps, commands, conclusion and verdict."""

from __future__ import annotations

import textwrap
from pathlib import Path

from pb_builders import gpu, process, snapshot

from opsconsole.config import Settings
from opsconsole.playbooks import PlaybookContext, PlaybookRunner, load_playbook_file

FULL = snapshot((gpu(0, used_gib=79, processes=(process(77, gib=78, user="bob", command="python big.py"),)),))
EMPTY = snapshot((gpu(0, used_gib=1),))


def playbook(tmp_path: Path, body: str, trusted: bool = False):
    path = tmp_path / "t.yaml"
    path.write_text("id: t\ntitle: Test\n" + textwrap.dedent(body))
    return load_playbook_file(path, trusted=trusted)


BRANCHING = """\
steps:
  - id: vram
    check: vram_free
    params: {min_gib: 10}
  - id: holders
    check: vram_holders
    when: "vram is fail"
  - id: advice
    manual: Shrink the batch.
    when: {all: ["vram is not pass", {any: ["holders is fail", "holders is warn"]}]}
conclusion:
  - when: "holders is fail"
    message: "{gpu_name} is held by someone else."
  - when: {verdict: pass}
    message: All good on {gpu_total_gib} GiB.
"""


def run(pb, snap, confirm=None, **ctx):
    return PlaybookRunner(pb, PlaybookContext(Settings(), snapshot=snap, user="alice", environ={}, **ctx), confirm).run()


def test_events_come_in_order_start_then_finish(tmp_path):
    runner = PlaybookRunner(playbook(tmp_path, BRANCHING), PlaybookContext(Settings(), snapshot=FULL, user="alice"))
    events = [(e.type, e.step.id, e.index, e.total) for e in runner.events()]
    assert events == [("start", "vram", 0, 3), ("finish", "vram", 0, 3), ("start", "holders", 1, 3),
                      ("finish", "holders", 1, 3), ("start", "advice", 2, 3), ("finish", "advice", 2, 3)]
    assert runner.outcome.verdict == "fail"


def test_when_branches_and_conclusion_is_chosen_from_results(tmp_path):
    pb = playbook(tmp_path, BRANCHING)
    failing = run(pb, FULL)
    statuses = {s.step.id: s.status for s in failing.steps}
    assert statuses == {"vram": "fail", "holders": "fail", "advice": "manual"}
    assert failing.verdict == "fail" and failing.exit_code == 2
    assert failing.conclusion == "NVIDIA H100 80GB HBM3 is held by someone else."

    passing = run(pb, EMPTY)
    statuses = {s.step.id: s.status for s in passing.steps}
    assert statuses == {"vram": "pass", "holders": "skip", "advice": "skip"}
    assert "condition `vram is fail` is false" in passing.steps[1].summary
    assert passing.verdict == "pass" and passing.exit_code == 0
    assert passing.conclusion == "All good on 80 GiB."


def test_manual_steps_are_printed_without_a_callback_and_confirmed_with_one(tmp_path):
    pb = playbook(tmp_path, "steps:\n  - id: vram\n    check: vram_free\n  - id: look\n    manual: Look at the fan.\n")
    printed = run(pb, EMPTY)
    assert printed.steps[1].status == "manual" and printed.verdict == "pass"
    asked = []
    confirmed = run(pb, EMPTY, confirm=lambda step, prompt: asked.append(prompt) or True)
    assert asked == ["Look at the fan."] and confirmed.steps[1].status == "pass"
    declined = run(pb, EMPTY, confirm=lambda step, prompt: False)
    assert declined.steps[1].status == "skip" and declined.verdict == "pass"


def test_conclusion_verdict_raises_but_never_lowers(tmp_path):
    pb = playbook(tmp_path, """\
        steps:
          - id: vram
            check: vram_free
            params: {min_gib: 10, severity: warn}
        conclusion:
          - when: "vram is warn"
            verdict: fail
            message: escalated
          - verdict: pass
            message: default
        """)
    assert run(pb, FULL).verdict == "fail"
    assert run(pb, EMPTY).verdict == "pass"


def test_a_crashing_check_is_an_error_not_a_crash(tmp_path, monkeypatch):
    from opsconsole.playbooks.checks import gpu_memory, registry

    def boom(ctx, params):
        raise RuntimeError("sensor exploded")

    spec = registry.CHECKS["vram_free"]
    monkeypatch.setitem(registry.CHECKS, "vram_free", type(spec)(**{**spec.__dict__, "function": boom}))
    pb = playbook(tmp_path, "steps:\n  - id: vram\n    check: vram_free\n  - id: holders\n    check: vram_holders\n")
    outcome = run(pb, EMPTY)
    assert outcome.steps[0].status == "error" and "sensor exploded" in outcome.steps[0].summary
    assert outcome.steps[1].status == "pass" and outcome.verdict == "error" and outcome.exit_code == 2
    assert gpu_memory.vram_free is not boom


def test_nothing_checkable_is_a_warning(tmp_path):
    pb = playbook(tmp_path, "steps:\n  - id: log\n    check: log_matches_kb\n")
    outcome = run(pb, EMPTY)
    assert outcome.steps[0].status == "skip" and outcome.verdict == "warn"
    assert "No step could check anything" in outcome.conclusion


def test_commands_run_on_a_real_machine_and_capture_output(tmp_path):
    pb = playbook(tmp_path, "steps:\n  - id: cpus\n    command: [nproc]\n    timeout: 10\n", trusted=True)
    real = snapshot((gpu(),), source="nvml")
    outcome = run(pb, real)
    step = outcome.steps[0]
    assert step.status == "pass" and step.evidence["exit_code"] == 0 and step.evidence["stdout"].strip().isdigit()
    assert step.evidence["argv"] == ["nproc"]
    declined = run(pb, real, confirm=lambda s, prompt: not prompt.startswith("Run `nproc`"))
    assert declined.steps[0].status == "skip" and declined.steps[0].summary == "declined"
    assert run(pb, FULL).steps[0].status == "skip"  # simulated machine: never runs commands


def test_commands_come_from_the_system_path_not_the_callers(tmp_path, monkeypatch):
    """A `nproc` planted first in the console's PATH must not run: programs come from SYSTEM_PATH."""
    planted = tmp_path / "bin"
    planted.mkdir()
    marker = tmp_path / "planted-ran"
    (planted / "nproc").write_text(f"#!/bin/sh\ntouch {marker}\necho 999\n")
    (planted / "nproc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{planted}:{__import__('os').environ['PATH']}")
    pb = playbook(tmp_path, "steps:\n  - id: cpus\n    command: [nproc]\n", trusted=True)
    step = run(pb, snapshot((gpu(),), source="nvml")).steps[0]
    assert step.status == "pass" and not marker.exists()
    assert step.evidence["stdout"].strip() != "999" and step.evidence["executable"].startswith(("/usr/", "/bin/"))


def test_a_hand_built_step_is_checked_again_before_it_runs(tmp_path):
    """The allow-list is enforced where the process starts too, not only by the loader."""
    from opsconsole.playbooks.commands import run_command

    marker = tmp_path / "ran"
    result = run_command(("touch", str(marker)), 5, "fail")
    assert result.status == "error" and "refused" in result.summary and not marker.exists()


def test_failing_command_uses_its_failure_status(tmp_path):
    pb = playbook(tmp_path, "steps:\n  - id: bad\n    command: [df, /no/such/path/opsconsole]\n    failure_status: fail\n",
                  trusted=True)
    outcome = run(pb, snapshot((gpu(),), source="nvml"))
    assert outcome.steps[0].status == "fail" and outcome.steps[0].evidence["exit_code"] != 0


def test_dry_run_plan_lists_commands_without_running_them(tmp_path):
    pb = playbook(tmp_path, "steps:\n  - id: smi\n    command: [nvidia-smi, -q]\n  - id: vram\n    check: vram_free\n"
                            "    when: \"smi is pass\"\n", trusted=True)
    plan = PlaybookRunner(pb, PlaybookContext(Settings(), simulate="no-such-scenario")).plan()
    assert [p.to_dict()["argv"] for p in plan if p.step.kind == "command"] == [["nvidia-smi", "-q"]]
    assert plan[1].condition == "smi is pass" and plan[1].action.startswith("check vram_free(")


def test_playbooks_never_import_torch_or_textual():
    import subprocess
    import sys

    code = ("import sys; from opsconsole.cli import main; "
            "main(['playbook', 'run', 'first-time-box-check', '--simulate', 'healthy-8xh100', '--json']); "
            "bad = [m for m in ('torch', 'textual', 'transformers', 'diffusers') if m in sys.modules]; "
            "sys.exit(10 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_unchecked_is_not_healthy():
    """Every NVML field NOT_SUPPORTED: gpu-health said "PASS: 2 GPU(s) healthy — no XID, ECC or row-remap
    errors, no throttling, full PCIe link, persistence mode on" although five steps said "not reported"."""
    from opsconsole.playbooks import load_playbooks

    bare = snapshot((gpu(0), gpu(1)), source="nvml")  # identity and memory only: nothing else reported
    outcome = run(load_playbooks(Settings()).playbooks["gpu-health"], bare)
    skipped = [o.step.id for o in outcome.steps if o.status == "skip" and o.summary.startswith("not reported")]
    assert len(skipped) >= 3, [(o.step.id, o.status, o.summary) for o in outcome.steps]
    assert outcome.verdict == "pass"
    assert "NOT CHECKED: " + ", ".join(skipped) in outcome.conclusion
    assert "healthy" not in outcome.conclusion and "no throttling" not in outcome.conclusion
