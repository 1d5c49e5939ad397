"""Cost of one full telemetry sample: `python bench/bench_sampling.py [--quick]`.

Figures (ms, median of many samples):
- simulated 8x H100 box: TelemetrySource.sample() (collector + host + findings);
- the real NvmlCollector code through the pynvml-level fake, 8 GPUs, per GPU,
  with the slow-field cache (the shipped behaviour) vs. re-reading every field
  every sample (baseline: what the cache saves);
- on a machine with an NVIDIA driver: the same against the real NVML, per GPU.
Goal: <= 1.5 ms per GPU per full sample.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opsconsole.telemetry import nvml as nvml_module  # noqa: E402
from opsconsole.telemetry.fake_nvml import GIB, FakeNvml, fake_nvml  # noqa: E402
from opsconsole.telemetry.host import HostCollector  # noqa: E402
from opsconsole.telemetry.nvml import NvmlCollector  # noqa: E402
from opsconsole.telemetry.source import TelemetrySource, open_source  # noqa: E402

GOAL_MS_PER_GPU = 1.5


def timings_ms(fn, repeats: int, warmup: int = 5) -> list[float]:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def median_ms(fn, repeats: int, warmup: int = 5) -> float:  # noqa: ANN001
    return statistics.median(timings_ms(fn, repeats, warmup))


def _row(name: str, value: float, unit: str, baseline: float | None = None, goal: str = "") -> dict:
    return {"name": name, "value": round(value, 4), "unit": unit, "baseline": None if baseline is None else round(baseline, 4),
            "ratio": None if not baseline else round(value / baseline, 3), "goal": goal}


def _collector_ms(gpus: int, repeats: int, slow_ttl: float) -> float:
    saved = nvml_module.SLOW_TTL_S
    nvml_module.SLOW_TTL_S = slow_ttl
    try:
        collector = NvmlCollector(watch_xid=False)
        try:
            return median_ms(collector.collect, repeats)
        finally:
            collector.close()
    finally:
        nvml_module.SLOW_TTL_S = saved


def _fake_machine(gpus: int) -> FakeNvml:
    fake = FakeNvml(gpus)
    for index, gpu in enumerate(fake.gpus):  # one visible process (psutil work) + one from another container
        gpu["nvmlDeviceGetComputeRunningProcesses"] = [SimpleNamespace(pid=os.getpid(), usedGpuMemory=GIB),
                                                       SimpleNamespace(pid=4_000_000 + index, usedGpuMemory=60 * GIB)]
    return fake


def run(quick: bool = False) -> list[dict]:
    repeats = 50 if quick else 300
    gpus = 8
    rows = []

    with open_source(simulate="healthy-8xh100", probe_env=False) as source:
        sim = median_ms(source.sample, repeats)
    rows.append(_row("simulated 8xH100 full sample", sim, "ms/sample"))
    rows.append(_row("simulated 8xH100 per GPU", sim / gpus, "ms/GPU", goal=f"<= {GOAL_MS_PER_GPU}"))

    with fake_nvml(_fake_machine(gpus)):
        cached = _collector_ms(gpus, repeats, slow_ttl=nvml_module.SLOW_TTL_S)
        uncached = _collector_ms(gpus, repeats, slow_ttl=0.0)
        source = TelemetrySource(NvmlCollector(watch_xid=False), HostCollector().collect, None)
        try:
            full_times = timings_ms(source.sample, repeats)
        finally:
            source.close()
    full, full_best = statistics.median(full_times), min(full_times)
    rows.append(_row("NvmlCollector via fake, per GPU (slow fields cached)", cached / gpus, "ms/GPU",
                     baseline=uncached / gpus, goal=f"<= {GOAL_MS_PER_GPU}"))
    rows.append(_row("NVML-fake full sample incl. host+findings, per GPU", full / gpus, "ms/GPU",
                     baseline=cached / gpus, goal=f"<= {GOAL_MS_PER_GPU}"))
    rows.append(_row("  same, best of the runs (least disturbed by CPU load)", full_best / gpus, "ms/GPU",
                     baseline=cached / gpus, goal=f"<= {GOAL_MS_PER_GPU}"))

    from opsconsole.telemetry.deadline import DeadlineWorker

    worker = DeadlineWorker(lambda: None)
    try:
        handoff = median_ms(lambda: worker.call(2.0), repeats)
    finally:
        worker.close()
    rows.append(_row("deadline-worker hand-off alone (2 thread wake-ups)", handoff, "ms/sample",
                     goal="small vs. the sample; grows with CPU load"))

    real = NvmlCollector(watch_xid=False)
    try:
        reading = real.collect()
        if reading.nvml.status == "ok" and reading.gpus:
            n = len(reading.gpus)
            cached_real = median_ms(real.collect, repeats)
            uncached_real = _collector_ms(n, max(20, repeats // 5), slow_ttl=0.0)
            rows.append(_row(f"real NVML per GPU ({n}x {reading.gpus[0].name})", cached_real / n, "ms/GPU",
                             baseline=uncached_real / n, goal=f"<= {GOAL_MS_PER_GPU}"))
        else:
            rows.append({"name": "real NVML", "value": None, "unit": "", "baseline": None, "ratio": None,
                         "goal": f"skipped: {reading.nvml.status}"})
    finally:
        real.close()
    return rows


def main() -> None:
    rows = run(quick="--quick" in sys.argv)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load {load:.1f} (a loaded box adds thread wake-up latency to the full-sample rows)")
    width = max(len(r["name"]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>9}  {'unit':<9} {'baseline':>9} {'ratio':>6}  goal")
    for r in rows:
        value = "—" if r["value"] is None else f"{r['value']:.4f}"
        base = "" if r["baseline"] is None else f"{r['baseline']:.4f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['name']:<{width}}  {value:>9}  {r['unit']:<9} {base:>9} {ratio:>6}  {r['goal']}")


if __name__ == "__main__":
    main()
