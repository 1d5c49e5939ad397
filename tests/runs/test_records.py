"""Wrong-typed records: shown as damaged, never a traceback, never a frozen follower."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from opsconsole.cli import main
from opsconsole.events import parse_event_line
from opsconsole.records import checked_result
from opsconsole.runs import RunManager
from opsconsole.runs.store import RunStore
from opsconsole.runs.tail import RunTail


@pytest.mark.parametrize("event", [
    {"type": "metric", "name": "loss", "value": None},      # killed the TUI follower thread
    {"type": "metric", "name": "loss", "value": "x"},
    {"type": "metric", "name": "loss", "value": float("nan")},
    {"type": "metric", "name": "", "value": 1.0},
    {"type": "progress", "step": "y", "total": 10},
    {"type": "finish", "status": "ok", "metrics": [1]},
    {"type": "artifact", "path": None},
    {"type": "finding", "severity": "warn", "message": 3},
])
def test_wrong_typed_events_are_dropped_like_torn_lines(event) -> None:
    assert parse_event_line(json.dumps(event)) is None


def test_good_events_pass() -> None:
    assert parse_event_line('{"type": "metric", "name": "loss", "value": 0.5, "step": 3}')["value"] == 0.5
    assert parse_event_line('{"type": "finish", "status": "ok", "metrics": {"lines": 2}}')["status"] == "ok"


def test_a_wrong_typed_result_is_emptied_field_by_field_and_named() -> None:
    result = checked_result({"id": "r1", "status": "ok", "metrics": [1, 2], "artifacts": "x",
                             "diagnoses": [{"id": "a"}, "junk"], "exit_code": "zero", "started_at": "abc"})
    assert result["metrics"] == {} and result["artifacts"] == [] and result["diagnoses"] == [{"id": "a"}]
    assert result["exit_code"] is None and result["started_at"] is None and result["status"] == "ok"
    assert len(result["record_problems"]) == 5
    assert checked_result([1]) is None and "record_problems" not in checked_result({"status": "ok", "metrics": {}})


def test_a_null_metric_does_not_stop_the_follower(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "output.log").write_text("")
    (run / "events.jsonl").write_text('{"t": 1, "type": "metric", "name": "loss", "value": null}\n'
                                      '{"t": 2, "type": "metric", "name": "loss", "value": 0.25, "step": 1}\n')
    update = RunTail(run).poll()
    assert [e["value"] for e in update.events] == [0.25]


def test_damaged_result_events_and_registry_row_never_give_a_traceback(tmp_path: Path, capsys) -> None:
    assert main(["run", "selftest", "--lines", "2", "--foreground", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["id"]
    record = RunManager().get(run_id)
    result = json.loads(Path(record.dir, "result.json").read_text())
    result.update(metrics=[1, 2], artifacts="x", diagnoses={"a": 1}, exit_code="zero")
    Path(record.dir, "result.json").write_text(json.dumps(result))
    with open(Path(record.dir, "events.jsonl"), "a") as fh:
        fh.write('{"type":"metric","name":"loss","value":null}\n[]\n"str"\n{"type":"finish","status":"ok","metrics":[1]}\n')
    with sqlite3.connect(RunStore().path) as conn:
        conn.execute("UPDATE runs SET started_at='abc', metrics='[1]', exit_code='q', params='{}'")
    for argv in (["runs", "list"], ["runs", "list", "--json"], ["runs", "show", run_id], ["runs", "show", run_id, "--json"],
                 ["runs", "attach", run_id], ["runs", "logs", run_id], ["report", "--simulate", "healthy-8xh100",
                                                                        "--out", str(tmp_path / "rep")]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, (argv, captured.err[-800:])
        assert "Traceback" not in captured.out + captured.err
        if argv[:2] == ["runs", "show"] and "--json" not in argv:
            assert "damaged record: result.json: `metrics` has the wrong type (list)" in captured.out
