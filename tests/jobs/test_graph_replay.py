"""gemma-infer --compile: the replay verdict (graph_replay.py) on the evidence a GPU run would give."""

from __future__ import annotations

import pytest

from opsconsole.jobs.graph_replay import ReplayWatch, replay_verdict


def _run(per_token_s: float, recorded: int = 0, replayed: int = 63, warmup: int = 0) -> dict:
    return {"per_token_s": per_token_s, "graphs": {"recorded": recorded, "replayed": replayed, "warmup": warmup}}


def test_two_replaying_runs_with_the_same_per_token_time_are_replaying() -> None:
    assert replay_verdict("cuda", [_run(0.0020), _run(0.0021)], True)["verdict"] == "replaying"


def test_a_timed_run_that_still_records_graphs_is_not_replaying() -> None:
    verdict = replay_verdict("cuda", [_run(0.02, recorded=63, replayed=0), _run(0.0021)], True)["verdict"]
    assert verdict.startswith("not replaying: timed run 1 still recorded 63 graph(s) and warmed up 0; ")


def test_no_graph_replayed_says_how_many_inductor_skipped() -> None:
    verdict = replay_verdict("cuda", [_run(0.01, replayed=0), _run(0.01, replayed=0)], True, skips=2)["verdict"]
    assert verdict.startswith("not replaying: timed run 1 replayed no CUDA graph (2 graph(s) skipped by inductor)")


def test_per_token_times_that_disagree_are_not_replaying() -> None:
    verdict = replay_verdict("cuda", [_run(0.0020), _run(0.0030)], True)["verdict"]
    assert verdict == "not replaying: per-token time differs 50% between two timed runs of the same input"


def test_without_torch_counters_stable_timings_decide() -> None:
    runs = [{"per_token_s": 0.002, "graphs": None}, {"per_token_s": 0.002, "graphs": None}]
    assert replay_verdict("cuda", runs, False)["verdict"] == "replaying"
    assert replay_verdict("cuda", runs[:1], False)["verdict"] == "not replaying: fewer than two timed runs"


def test_cpu_has_no_cuda_graphs() -> None:
    assert replay_verdict("cpu", [_run(0.001), _run(0.005)], True)["verdict"] == "no CUDA graphs on cpu"


@pytest.mark.ml
def test_the_watch_counts_calls_into_the_cuda_graph_tree_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._inductor import cudagraph_trees

    calls = []
    for name in ("record_function", "execute_node", "run_eager"):
        monkeypatch.setattr(cudagraph_trees.CUDAGraphTreeManager, name,
                            lambda self, *a, _name=name, **k: calls.append(_name) or _name)
    watch = ReplayWatch().install()
    assert watch.available
    before = watch.snapshot()
    manager = object.__new__(cudagraph_trees.CUDAGraphTreeManager)
    assert manager.execute_node(None, []) == "execute_node"  # the original still runs
    manager.execute_node(None, [])
    manager.record_function([], 0)
    assert ReplayWatch.delta(before, watch.snapshot()) == {"recorded": 1, "replayed": 2, "warmup": 0}
    watch.uninstall()
    manager.run_eager([], 0)
    assert watch.snapshot()["warmup"] == 0 and calls[-1] == "run_eager"
