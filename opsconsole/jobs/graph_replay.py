"""Is a compiled decode replaying CUDA graphs, or still recording them? (gemma-infer --compile)

torch.compile(mode="reduce-overhead") runs each new input signature once eagerly (warm-up),
records a CUDA graph the next time and replays it after that. Gemma 2's sliding-window
cache keeps its length as a Python int, so every decode position is its own graph: a
timed generate right after one warm-up measures recording, not replay. ReplayWatch counts
what torch's CUDA-graph trees did during a timed run (warm-up runs, recordings, replays);
`replay_verdict` turns two timed runs into "replaying" or the reason it is not.
"""

from __future__ import annotations

from typing import Any

STABLE_WITHIN = 0.15  # two replaying runs of the same input agree on per-token time within 15 %
_METHODS = {"record_function": "recorded", "execute_node": "replayed", "run_eager": "warmup"}


class ReplayWatch:
    """Counts calls into torch._inductor.cudagraph_trees.CUDAGraphTreeManager (a private API: if it
    is not there, `available` is False and the verdict rests on the timings alone)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_METHODS.values(), 0)
        self.available = False
        self._originals: dict[str, Any] = {}
        self._manager: Any = None

    def install(self) -> ReplayWatch:
        try:
            from torch._inductor.cudagraph_trees import CUDAGraphTreeManager
        except Exception:  # noqa: BLE001 - any torch without the module: timings only
            return self
        if not all(hasattr(CUDAGraphTreeManager, name) for name in _METHODS):
            return self
        self._manager = CUDAGraphTreeManager
        for name, key in _METHODS.items():
            original = getattr(CUDAGraphTreeManager, name)
            self._originals[name] = original
            setattr(CUDAGraphTreeManager, name, self._counting(original, key))
        self.available = True
        return self

    def _counting(self, original: Any, key: str) -> Any:
        def counted(manager: Any, *args: Any, **kwargs: Any) -> Any:
            self.counts[key] += 1
            return original(manager, *args, **kwargs)

        return counted

    def uninstall(self) -> None:
        for name, original in self._originals.items():
            setattr(self._manager, name, original)
        self._originals.clear()

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    @staticmethod
    def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        return {k: after[k] - before[k] for k in after}


def cudagraph_skips() -> int | None:
    """Inductor's count of graphs it decided not to run as CUDA graphs (None if unknown)."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["inductor"]["cudagraph_skips"])
    except Exception:  # noqa: BLE001
        return None


def replay_verdict(device: str, runs: list[dict[str, Any]], watch_available: bool,
                   skips: int | None = None) -> dict[str, Any]:
    """runs: [{"per_token_s": float, "graphs": {"recorded", "replayed", "warmup"}}] for two timed runs
    of the same input. Returns {"verdict": "replaying" | "not replaying: ..." | "no CUDA graphs on cpu", ...}."""
    out: dict[str, Any] = {"runs": runs, "counters": watch_available, "cudagraph_skips": skips}
    if not device.startswith("cuda"):
        out["verdict"] = "no CUDA graphs on cpu"
        return out
    times = [r["per_token_s"] for r in runs if r.get("per_token_s")]
    spread = (max(times) - min(times)) / min(times) if len(times) >= 2 and min(times) > 0 else None
    out["per_token_spread"] = None if spread is None else round(spread, 4)
    reasons = []
    if watch_available:
        for index, run in enumerate(runs, 1):
            graphs = run.get("graphs") or {}
            if graphs.get("recorded") or graphs.get("warmup"):
                reasons.append(f"timed run {index} still recorded {graphs.get('recorded', 0)} graph(s) and warmed up "
                               f"{graphs.get('warmup', 0)}")
            elif not graphs.get("replayed"):
                reasons.append(f"timed run {index} replayed no CUDA graph"
                               + (f" ({skips} graph(s) skipped by inductor)" if skips else ""))
    if spread is None:
        reasons.append("fewer than two timed runs")
    elif spread > STABLE_WITHIN:
        reasons.append(f"per-token time differs {100 * spread:.0f}% between two timed runs of the same input")
    out["verdict"] = "replaying" if not reasons else "not replaying: " + "; ".join(reasons)
    return out
