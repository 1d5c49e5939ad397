"""The steps of bench/gpu_check.sh: `python bench/gpu_check.py [--device cpu|cuda] --out DIR`.

Each step runs as a subprocess with its own timeout, cut to what is left of the
overall budget; a step that fails or times out is recorded and the next one runs.
Writes DIR/results.json, DIR/summary.md and DIR/gpu_check.log (each step's output tail).
Needs only the standard library plus what opsconsole itself needs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
TAIL_CHARS = 4000

# Peak HBM bandwidth in bytes/s, matched on the NVML name (first match wins: put the specific names first).
# Sources: NVIDIA H100 product page / datasheet (SXM 3.35 TB/s, PCIe 2.0 TB/s, NVL 3.9 TB/s)
#   https://www.nvidia.com/en-us/data-center/h100/ ;
# NVIDIA H200 product page (4.8 TB/s) https://www.nvidia.com/en-us/data-center/h200/ ;
# NVIDIA A100 datasheet (80GB SXM 2.039 TB/s, 80GB PCIe 1.935 TB/s, 40GB 1.555 TB/s)
#   https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
HBM_BANDWIDTH: tuple[tuple[tuple[str, ...], float, str], ...] = (
    (("H200",), 4.8e12, "H200 (HBM3e)"),
    (("H100", "NVL"), 3.9e12, "H100 NVL"),
    (("H100", "PCIE"), 2.0e12, "H100 PCIe"),
    (("H100",), 3.35e12, "H100 SXM"),
    (("A100", "80GB"), 2.0e12, "A100 80GB"),
    (("A100",), 1.555e12, "A100 40GB"),
)


def hbm_bandwidth(gpu_name: str) -> tuple[float, str] | None:
    """(bytes/s, label) for an NVML GPU name such as 'NVIDIA H100 80GB HBM3', or None if unknown."""
    upper = gpu_name.upper()
    for needles, bandwidth, label in HBM_BANDWIDTH:
        if all(n in upper for n in needles):
            return bandwidth, label
    return None


def decode_ceiling(tokens_per_s: float | None, params: int | None, bytes_per_param: int, gpu_name: str | None
                   ) -> dict[str, Any]:
    """Batch-1 decode reads every weight once per token: ceiling = bandwidth / bytes of weights."""
    found = hbm_bandwidth(gpu_name or "")
    if not found or not params:
        return {}
    bandwidth, label = found
    ceiling = bandwidth / (params * bytes_per_param)
    out: dict[str, Any] = {"hbm_gpu": label, "hbm_bytes_per_s": bandwidth, "weight_bytes": params * bytes_per_param,
                           "ceiling_tokens_per_s": round(ceiling, 1)}
    if tokens_per_s:
        out["fraction_of_ceiling"] = round(tokens_per_s / ceiling, 3)
    return out


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout: float
    parse: Callable[[str], dict[str, Any]] | None = None
    skip: str | None = None  # reason the step does not run on this device
    ok_codes: tuple[int, ...] = (0,)  # exit codes that mean the step itself worked


def _json_tail(text: str) -> Any:
    """The last JSON document printed on stdout (commands print one object)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON on stdout")
    return json.loads(text[start:])


def parse_run(text: str) -> dict[str, Any]:
    result = _json_tail(text)
    metrics = {k: v for k, v in (result.get("metrics") or {}).items() if k != "text"}
    out = {"status": result.get("status"), "run_id": result.get("id"), "metrics": metrics}
    if result.get("status") != "ok":
        out["error"] = result.get("error")
        out["diagnoses"] = [d.get("id") for d in result.get("diagnoses") or []]
    return out


def parse_status(text: str) -> dict[str, Any]:
    snap = _json_tail(text)
    return {"status": "ok", "nvml": snap.get("nvml"),
            "gpus": [{k: g.get(k) for k in ("index", "name", "uuid", "memory_total", "temperature", "driver_version")}
                     for g in snap.get("gpus") or []],
            "findings": [f.get("id") for f in snap.get("findings") or []]}


def parse_rows(text: str) -> dict[str, Any]:
    return {"status": "ok", "rows": _json_tail(text)["rows"]}


def parse_pytest(text: str) -> dict[str, Any]:
    last = [line for line in text.splitlines() if line.strip()][-1:] or [""]
    return {"summary": last[0].strip("= ")}


def opsconsole(*args: str) -> list[str]:
    return [sys.executable, "-m", "opsconsole", *args]


def run_job(kind: str, *job_args: str) -> list[str]:
    return opsconsole("run", kind, *job_args, "--foreground", "--json")


def build_steps(device: str) -> list[Step]:
    cpu = device == "cpu"
    dev = ["--device", "cpu" if cpu else "cuda"]
    gemma = ["--model", "tiny", "--dtype", "fp32"] if cpu else ["--model", "gemma-2-2b", "--weights", "random",
                                                                  "--dtype", "bf16"]
    sd = ["--model", "tiny", "--dtype", "fp32", "--steps", "3", "--warmup-steps", "1"] if cpu else \
        ["--model", "sd15", "--weights", "random", "--dtype", "fp16", "--width", "512", "--height", "512",
         "--steps", "20"]
    tokens = ["--max-new-tokens", "16" if cpu else "128"]
    train_steps = "3" if cpu else "20"  # CPU: the path end to end, not a measurement
    sd_compile = _job_has_flag("sd-infer", "--compile")
    sampling = ("import json, bench.bench_sampling as b; "
                f"print(json.dumps({{'status': 'ok', 'rows': b.run(quick={cpu})}}))")
    steps = [
        Step("pytest tests/gpu", [sys.executable, "-m", "pytest", "tests/gpu", "-q", "-p", "no:cacheprovider",
                                  "-rs", "-o", "addopts="], 150, parse_pytest),
        # status exits 1/2 when it raises warnings / critical findings: that is a result, not a failure
        Step("status --json", opsconsole("status", "--json"), 45, parse_status, ok_codes=(0, 1, 2)),
        Step("sampling cost", [sys.executable, "-c", sampling], 60, _json_tail),
        # Gemma 2 under transformers 5 has no sdpa (it cannot soft-cap attention logits): the fused
        # path is flex_attention; compile is eager attention + static KV cache + torch.compile.
        Step("gemma-infer eager", run_job("gemma-infer", *dev, *gemma, *tokens, "--attn", "eager"), 120, parse_run),
        Step("gemma-infer flex_attention", run_job("gemma-infer", *dev, *gemma, *tokens, "--attn", "flex_attention"),
             150, parse_run),
        Step("gemma-infer eager+compile", run_job("gemma-infer", *dev, *gemma, *tokens, "--attn", "eager",
                                                  "--compile"),
             240, parse_run, skip="torch.compile on CPU takes minutes" if cpu else None),
        Step("sd-infer", run_job("sd-infer", *dev, *sd), 120, parse_run),
        Step("sd-infer compiled", run_job("sd-infer", *dev, *sd, "--compile"), 240, parse_run,
             skip="torch.compile on CPU takes minutes" if cpu else
             None if sd_compile else "sd-infer has no --compile flag (an older checkout?)"),
        Step(f"gemma-lora {train_steps} steps", run_job("gemma-lora", *dev, *(gemma[:2] if cpu else gemma),
                                                         "--steps", train_steps), 150, parse_run),
        Step(f"sd-lora {train_steps} steps", run_job("sd-lora", *dev, *sd[:4], "--steps", train_steps, *(
            ["--batch", "1", "--num-images", "4", "--sample-steps", "2"] if cpu else ["--resolution", "512", "--batch", "1"])),
             150, parse_run),
        Step("nccl-check", run_job("nccl-check", *dev), 90, parse_run),
    ]
    return steps


def _job_has_flag(kind: str, flag: str) -> bool:
    try:
        sys.path.insert(0, str(REPO))
        from opsconsole.benchmatrix import job_supports

        return job_supports(kind, flag)
    except Exception:
        return False


def run_step(step: Step, timeout: float, log: Any, env: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {"name": step.name, "cmd": " ".join(step.argv[1:] if step.argv else [])}
    if step.skip:
        record.update(status="skipped", reason=step.skip)
        return record
    if timeout < 1:
        record.update(status="skipped", reason="out of time budget")
        return record
    started = time.monotonic()
    try:
        proc = subprocess.run(step.argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
        timed_out = False
    except subprocess.TimeoutExpired as exc:
        stdout = _text(exc.stdout)
        stderr = _text(exc.stderr)
        code, timed_out = None, True
    record["seconds"] = round(time.monotonic() - started, 1)
    record["exit_code"] = code
    log.write(f"\n===== {step.name} (exit {code}, {record['seconds']} s) =====\n$ {record['cmd']}\n")
    log.write(stdout[-TAIL_CHARS:] + ("\n--- stderr ---\n" + stderr[-TAIL_CHARS:] if stderr.strip() else ""))
    log.flush()
    if timed_out:
        record.update(status="timeout", reason=f"no result within {timeout:.0f} s")
        return record
    if step.parse is not None:
        try:
            record.update(step.parse(stdout))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            record.update(status="failed", reason=f"unreadable output ({exc}); last stderr: {stderr.strip()[-300:]}")
            return record
    record.setdefault("status", "ok" if code in step.ok_codes else "failed")
    if code not in (*step.ok_codes, None) and record["status"] == "ok":
        record["status"] = "failed"
    if record["status"] != "ok" and "reason" not in record:
        record["reason"] = record.get("error") or (stderr.strip().splitlines() or [f"exit {code}"])[-1][-300:]
    return record


def _text(data: Any) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def add_ceilings(results: list[dict[str, Any]]) -> None:
    gpu_name = next((g.get("name") for r in results if r["name"] == "status --json" for g in r.get("gpus") or []),
                    None)
    for record in results:
        if record["name"].startswith("gemma-infer") and record.get("status") == "ok":
            m = record["metrics"]
            bytes_per_param = {"bf16": 2, "fp16": 2, "fp32": 4}.get(m.get("dtype"), 2)
            record["roofline"] = decode_ceiling(m.get("decode_tokens_per_s"), m.get("params"), bytes_per_param,
                                                gpu_name)


# step -> (baseline step, metric): the ratio goes into results.json and the summary line.
BASELINES = {
    "gemma-infer flex_attention": ("gemma-infer eager", "decode_tokens_per_s"),
    "gemma-infer eager+compile": ("gemma-infer eager", "decode_tokens_per_s"),
    "sd-infer compiled": ("sd-infer", "it_per_s"),
}


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Each variant's headline figure over its baseline step's, when both ran ok in this check."""
    by_name = {r["name"]: r for r in results if r.get("status") == "ok"}
    for name, (base_name, key) in BASELINES.items():
        record, base = by_name.get(name), by_name.get(base_name)
        if record and base:
            value, baseline = (record.get("metrics") or {}).get(key), (base.get("metrics") or {}).get(key)
            if value and baseline:
                record["vs_baseline"] = {"baseline": base_name, "metric": key, "ratio": round(value / baseline, 3)}


def _fmt(value: Any, scale: float = 1.0, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value * scale:.{digits}g}"
    return str(value)


def headline(record: dict[str, Any]) -> str:
    """The one figure that matters for a step, as text for the summary table."""
    m = record.get("metrics") or {}
    name = record["name"]
    if name.startswith("gemma-infer"):
        roof = record.get("roofline") or {}
        text = f"decode {_fmt(m.get('decode_tokens_per_s'))} tok/s, TTFT {_fmt(m.get('ttft_s'), 1000)} ms"
        if roof.get("ceiling_tokens_per_s"):
            text += (f"; ceiling {roof['ceiling_tokens_per_s']:.0f} tok/s ({roof['hbm_gpu']}), "
                     f"{100 * roof.get('fraction_of_ceiling', 0):.0f}% of it")
        return text + _versus(record)
    if name.startswith("sd-infer"):
        return f"{_fmt(m.get('it_per_s'))} it/s, {_fmt(m.get('s_per_image'))} s/image" + _versus(record)
    if "lora" in name:
        return ", ".join(f"{k} {_fmt(m[k])}" for k in ("steps_per_s", "final_loss", "loss_first", "loss_last")
                         if k in m) or "-"
    if name == "nccl-check":
        return ", ".join(f"{k} {_fmt(v)}" for k, v in m.items() if isinstance(v, (int, float)) and "bw" in k) or "-"
    if name == "status --json":
        gpus = record.get("gpus") or []
        return f"{len(gpus)} GPU(s): {', '.join(sorted({g['name'] for g in gpus if g.get('name')})) or (record.get('nvml') or {}).get('status')}"
    if name == "sampling cost":
        return "; ".join(f"{r['name']}: {_fmt(r.get('value'))} {r.get('unit', '')}" for r in record.get("rows") or []
                         if "per GPU" in r.get("name", ""))
    if name.startswith("pytest"):
        return record.get("summary", "-")
    return "-"


def _versus(record: dict[str, Any]) -> str:
    """'; 1.4x gemma-infer eager; warm-up 38 s' (the warm-up, untimed, is where compilation happens)."""
    text = ""
    versus = record.get("vs_baseline")
    if versus:
        text += f"; {versus['ratio']:.2f}x {versus['baseline']}"
    warmup = (record.get("metrics") or {}).get("warmup_s")
    if warmup is not None and warmup >= 1:
        text += f"; warm-up {warmup:.0f} s (untimed)"
    return text


def summary_markdown(report: dict[str, Any]) -> str:
    lines = [f"# gpu_check ({report['device']})", "",
             f"{report['started']} on {report['host']}, python {report['python']}, {report['total_s']} s in all.", "",
             "| step | status | seconds | result |", "|---|---|---|---|"]
    for r in report["steps"]:
        result = headline(r) if r.get("status") == "ok" else r.get("reason", "")
        result = str(result).replace("|", "/").replace("\n", " ")[:300]
        lines.append(f"| {r['name']} | {r.get('status')} | {r.get('seconds', '-')} | {result} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget", type=float, default=345.0, help="seconds for all steps together")
    parser.add_argument("--only", action="append", default=[], help="run only steps whose name starts with this")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
               PYTHONUNBUFFERED="1")
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    steps = [s for s in build_steps(args.device) if not args.only or any(s.name.startswith(o) for o in args.only)]
    deadline = time.monotonic() + args.budget
    started = time.monotonic()
    results = []
    with open(out / "gpu_check.log", "w", encoding="utf-8") as log:
        for step in steps:
            left = deadline - time.monotonic()
            print(f"[gpu_check] {step.name} (timeout {min(step.timeout, left):.0f} s)", file=sys.stderr, flush=True)
            record = run_step(step, min(step.timeout, left), log, env)
            print(f"[gpu_check]   -> {record['status']} {record.get('reason', '')}"[:300], file=sys.stderr, flush=True)
            results.append(record)
    add_ceilings(results)
    add_ratios(results)
    report = {"device": args.device, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "host": platform.node(), "python": platform.python_version(),
              "total_s": round(time.monotonic() - started, 1), "steps": results}
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (out / "summary.md").write_text(summary_markdown(report), encoding="utf-8")
    sys.stdout.write(summary_markdown(report))
    return 0 if all(r["status"] in ("ok", "skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
