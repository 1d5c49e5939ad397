"""One check of a GPU machine, planned to fit 8 minutes: `bash bench/gpu_check.sh [options]`.

    --plan                 print the steps (`ID  budget  what`) and `total N s`; run nothing
    --device cuda|cpu      cuda (default): full-size models; cpu: the same plan on tiny models (CI)
    --out DIR              results.json, summary.md, gpu_check.log (default: $OUT)
    --only ID,... / --skip ID,...      rerun what failed / leave steps out
    --step-timeout S | ID=S,...        override every budget, or one step's (tests)

Each step runs in its own process group with its own timeout. On a timeout the whole
group is killed and every run it started is stopped (`opsconsole runs stop`), so the GPU
is free for the next step. Runs go to a private state dir, so "ours" is well defined;
after the last step the script checks that nothing of ours is left running and says so.
results.json and summary.md are rewritten after every step: a command killed at its
limit still returns what it did. Standard library only (the steps import the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.gpu_references import decode_reference, sd_reference  # noqa: E402
from opsconsole.children import kill_group  # noqa: E402  (stdlib-only ground floor)

TOTAL_BUDGET_S = 480  # 8 minutes of wall time, set-up included
CLEANUP_RESERVE_S = 5  # kept back at the end of the budget for killing and stopping what is left
TAIL_CHARS = 4000
TOKEN_ENV = "GPU_CHECK_TOKEN"  # inherited by every process a step starts: how we find ours
DEVICE_ENV = "GPU_CHECK_DEVICE"  # tests/gpu read it: cpu runs them on tiny models
COPY_BW_ENV = "GPU_CHECK_COPY_BW"  # the probe step's measured copy bandwidth, for the GPU tests
GPU_NAME_ENV = "GPU_CHECK_GPU_NAME"  # the status step's GPU name, for the spec references
REQUIRED_IMPORTS = ("textual", "rich", "rapidfuzz", "yaml", "psutil", "pynvml", "torch", "transformers",
                    "diffusers", "peft", "accelerate", "pytest")


@dataclass
class Context:
    device: str
    out: Path
    work: Path
    python: str
    env: dict[str, str]
    facts: dict[str, Any] = field(default_factory=dict)  # gpu name, copy bandwidth, ... from earlier steps

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


@dataclass(frozen=True)
class Command:
    """One child of a step: argv(ctx) -> argv; read(ctx, stdout, code) -> fields for the step's record."""

    argv: Callable[[Context], list[str]]
    read: Callable[[Context, str, int], dict[str, Any]]
    ok_codes: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Step:
    id: str
    what: str
    budget: dict[str, float]  # device -> seconds
    commands: tuple[Command, ...] = ()
    tests: tuple[str, ...] = ()  # pytest node ids under tests/gpu: a pytest step
    skip: Callable[[Context], str | None] | None = None


# --- what each kind of step reads ----------------------------------------------------------------

def _json_doc(text: str) -> Any:
    """The JSON document a command printed (the first '{' to the end of stdout)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON on stdout")
    return json.loads(text[start:])


def read_status(ctx: Context, text: str, code: int) -> dict[str, Any]:
    """`status --json`: the real keys are gpus[].memory.total, gpus[].power.limit and nvml.driver_version."""
    snap = _json_doc(text)
    nvml = snap.get("nvml") or {}
    gpus = [{"index": g.get("index"), "name": g.get("name"), "uuid": g.get("uuid"),
             "memory_total": (g.get("memory") or {}).get("total"), "power_limit": (g.get("power") or {}).get("limit"),
             "temperature": (g.get("temperature") or {}).get("current"), "state": g.get("state")}
            for g in snap.get("gpus") or []]
    record: dict[str, Any] = {"nvml": {k: nvml.get(k) for k in ("status", "message", "driver_version",
                                                                 "cuda_driver_version")},
                              "gpus": gpus, "findings": [f.get("id") for f in snap.get("findings") or []]}
    if gpus and gpus[0]["name"]:
        ctx.facts["gpu_name"] = gpus[0]["name"]
        ctx.env[GPU_NAME_ENV] = gpus[0]["name"]
    if ctx.cuda and (nvml.get("status") != "ok" or not gpus):
        record.update(status="failed", reason=f"NVML {nvml.get('status')}: {nvml.get('message') or 'no GPU listed'}")
    names = ", ".join(sorted({g["name"] for g in gpus if g["name"]})) or f"NVML {nvml.get('status')}"
    record["summary"] = (f"{len(gpus)} GPU(s): {names}; driver {nvml.get('driver_version') or '-'}"
                         + "".join(f"; {_gib(g['memory_total'])} GiB, {g['power_limit'] or '-'} W limit"
                                   for g in gpus[:1]))
    return record


def read_probe(ctx: Context, text: str, code: int) -> dict[str, Any]:
    env = (_json_doc(text).get("cuda_env") or {})
    keys = ("status", "message", "python", "torch_version", "torch_cuda", "cuda_available", "device_count",
            "arch_covered", "bf16_supported")
    record: dict[str, Any] = {"cuda_env": {k: env.get(k) for k in keys}}
    if ctx.cuda and env.get("cuda_available") is not True:
        record.update(status="failed", reason=f"the CUDA probe says CUDA is not available to torch "
                                              f"({env.get('status')}: {env.get('cuda_error') or env.get('message')})")
    record["summary"] = (f"torch {env.get('torch_version') or '-'} (CUDA {env.get('torch_cuda') or '-'}), "
                         f"cuda_available {env.get('cuda_available')}, {env.get('device_count')} device(s), "
                         f"arch covered {env.get('arch_covered')}")
    return record


def read_copy_bandwidth(ctx: Context, text: str, code: int) -> dict[str, Any]:
    measured = _json_doc(text)
    bandwidth = float(measured["copy_bytes_per_s"])
    ctx.facts["copy_bytes_per_s"] = bandwidth
    ctx.env[COPY_BW_ENV] = repr(bandwidth)
    return {"copy_bandwidth": measured, "summary_extra": f"copy bandwidth {bandwidth / 1e9:.0f} GB/s (read + write)"}


def read_setup_imports(ctx: Context, text: str, code: int) -> dict[str, Any]:
    found = _json_doc(text)
    missing = sorted(k for k, v in found.items() if v is None)
    record: dict[str, Any] = {"versions": found,
                              "summary": ", ".join(f"{k} {v}" for k, v in found.items() if v) or "-"}
    if missing:
        record.update(status="failed", reason=f"missing in {ctx.python}: {', '.join(missing)} (carry their wheels: "
                                              "bash bench/fetch_wheels.sh, then name .whl in carry)")
    return record


def read_diag(ctx: Context, text: str, code: int) -> dict[str, Any]:
    return {"diag": _json_doc(text)}


def read_junit(ctx: Context, xml_path: Path) -> dict[str, Any]:
    """Per test: outcome, the failure or skip message, and the figures it recorded (record_property)."""
    root = ET.parse(xml_path).getroot()
    tests: list[dict[str, Any]] = []
    for case in root.iter("testcase"):
        entry: dict[str, Any] = {"test": case.get("name"), "seconds": round(float(case.get("time") or 0), 1),
                                 "outcome": "passed"}
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                entry["outcome"] = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or node.text or "").strip()
                entry["message"] = message.splitlines()[0][:400] if message else tag
                break
        for prop in case.iter("property"):
            if prop.get("name") == "gpu_check":
                entry["figures"] = json.loads(prop.get("value") or "{}")
        tests.append(entry)
    return {"tests": tests}


# --- the plan ------------------------------------------------------------------------------------

def _opsconsole(*args: str) -> Callable[[Context], list[str]]:
    return lambda ctx: [ctx.python, "-m", "opsconsole", *args]


def _setup_install(ctx: Context) -> list[str]:
    site = ctx.work / "site"
    return [ctx.python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
            "--upgrade", "--target", str(site), *map(str, sorted((REPO / ".whl").glob("*.whl")))]


def _read_setup_install(ctx: Context, text: str, code: int) -> dict[str, Any]:
    site = str(ctx.work / "site")
    ctx.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), site, ctx.env.get("PYTHONPATH")) if p)
    return {"installed": sorted(p.name for p in (REPO / ".whl").glob("*.whl"))}


_IMPORTS = ("import importlib, importlib.metadata as m, json; out = {}\n"
            "for name in %r:\n"
            "    try:\n"
            "        mod = importlib.import_module(name); out[name] = getattr(mod, '__version__', None) or 'present'\n"
            "    except Exception:\n"
            "        out[name] = None\n"
            "print(json.dumps(out))" % (REQUIRED_IMPORTS,))


def _diag_missing(ctx: Context) -> str | None:
    if (REPO / "opsconsole" / "cli" / "diag.py").is_file():
        return None
    return "`opsconsole diag` does not exist yet in this checkout (opsconsole/cli/diag.py): nothing to run"


PLAN: tuple[Step, ...] = (
    Step("setup", "install the carried wheels (.whl/, offline) and check every package imports",
         {"cuda": 15, "cpu": 30},
         commands=(Command(_setup_install, _read_setup_install),
                   Command(lambda ctx: [ctx.python, "-c", _IMPORTS], read_setup_imports))),
    Step("nvml", "real NVML collector vs nvidia-smi, our own GPU process listed (tests/gpu)", {"cuda": 25, "cpu": 30},
         tests=("tests/gpu/test_nvml_real_gpu.py",)),
    Step("status", "`opsconsole status --json --no-probe` on the real NVML", {"cuda": 15, "cpu": 20},
         commands=(Command(_opsconsole("status", "--json", "--no-probe"), read_status, ok_codes=(0, 1, 2)),)),
    Step("probe", "the CUDA probe (`status --json`) and the copy bandwidth the ceilings use", {"cuda": 25, "cpu": 30},
         commands=(Command(_opsconsole("status", "--json"), read_probe, ok_codes=(0, 1, 2)),
                   Command(lambda ctx: [ctx.python, str(REPO / "bench" / "gpu_references.py"), "copy-bandwidth",
                                        "--device", ctx.device], read_copy_bandwidth))),
    Step("gemma-infer", "gemma-2-2b random bf16 eager decode vs the HBM ceiling", {"cuda": 45, "cpu": 45},
         tests=("tests/gpu/test_gemma_gpu.py::test_gemma_infer_decode_is_a_fair_share_of_the_hbm_ceiling",)),
    Step("sd-infer", "SD 1.5 512x512 fp16 it/s vs published; a real fp16 overflow caught", {"cuda": 45, "cpu": 50},
         tests=("tests/gpu/test_sd_gpu.py::test_sd15_it_per_s_is_within_3x_of_the_published_figure",
                "tests/gpu/test_sd_gpu.py::test_a_real_fp16_overflow_is_caught_and_fp32_is_not_hit")),
    Step("gemma-lora", "gemma-lora on the device: the loss falls, the adapter reloads", {"cuda": 25, "cpu": 35},
         tests=("tests/gpu/test_gemma_gpu.py::test_gemma_lora_trains_and_the_adapter_reloads",)),
    Step("sd-lora", "sd-lora fp16 with the grad scaler: the loss falls", {"cuda": 30, "cpu": 35},
         tests=("tests/gpu/test_sd_gpu.py::test_sd_lora_fp16_trains_with_the_grad_scaler",)),
    Step("gemma-compile", "gemma-2-2b static cache + torch.compile: decode replays CUDA graphs",
         {"cuda": 125, "cpu": 75},
         tests=("tests/gpu/test_gemma_gpu.py::test_compiled_decode_replays_cuda_graphs",)),
    Step("sd-compile", "SD 1.5 512x512 fp16 compiled UNet (reduce-overhead) vs published", {"cuda": 90, "cpu": 120},
         tests=("tests/gpu/test_sd_gpu.py::test_sd15_compiled_unet_is_within_3x_of_the_published_figure",)),
    Step("diag", "`opsconsole diag --level 1 --json` (active diagnostics)", {"cuda": 20, "cpu": 20},
         commands=(Command(_opsconsole("diag", "--level", "1", "--json"), read_diag, ok_codes=(0, 1, 2)),),
         skip=_diag_missing),
    Step("nccl", "nccl-check all-reduce: the reduced values are verified, bandwidth reported", {"cuda": 20, "cpu": 30},
         tests=("tests/gpu/test_gemma_gpu.py::test_nccl_check_verifies_the_reduced_values",
                "tests/gpu/test_gemma_gpu.py::test_two_gpu_ddp_uses_nccl")),
)
STEP_IDS = tuple(s.id for s in PLAN)


def plan_lines(steps: list[Step], device: str, budgets: dict[str, float], ctx: Context | None = None) -> list[str]:
    lines, total = [], 0.0
    for step in steps:
        reason = step.skip(ctx) if (step.skip and ctx is not None) else None
        if reason:
            lines.append(f"{step.id:<14}{'-':>6}  {step.what} [skipped: {reason}]")
            continue
        total += budgets[step.id]
        lines.append(f"{step.id:<14}{budgets[step.id]:>5.0f}s  {step.what}")
    lines.append(f"total {total:.0f} s")
    return lines


# --- running a step ------------------------------------------------------------------------------

def run_group(argv: list[str], timeout: float, ctx: Context, log: Any, label: str,
              env: dict[str, str] | None = None) -> tuple[int | None, str, str]:
    """argv in its own session/process group; on timeout the whole group is killed. (code|None, out, err)."""
    log.write(f"\n===== {label} =====\n$ {' '.join(argv)}\n")
    log.flush()
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        proc = subprocess.Popen(argv, cwd=REPO, env=env or ctx.env, stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f,
                                start_new_session=True)
        ctx.facts.setdefault("pgids", []).append(proc.pid)
        try:
            code: int | None = proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            code = None
        finally:
            kill_group(proc.pid)  # done or not: nothing of its group outlives it (a job's own session aside)
            proc.wait()
        out_f.seek(0)
        err_f.seek(0)
        stdout = out_f.read().decode("utf-8", "replace")
        stderr = err_f.read().decode("utf-8", "replace")
    log.write(stdout[-TAIL_CHARS:] + ("\n--- stderr ---\n" + stderr[-TAIL_CHARS:] if stderr.strip() else "")
              + f"\n----- exit {code if code is not None else 'timeout'}\n")
    log.flush()
    return code, stdout, stderr


def stop_our_runs(ctx: Context, log: Any, private: bool = True) -> list[str]:
    """`opsconsole runs stop` for every run still active in a state dir of ours: the check's private
    one (`private`), and those of our processes still alive (a test's run lives in pytest's per-test
    state dir, which only the live job's environment still names)."""
    state_dirs = [ctx.env["XDG_STATE_HOME"]] if private else []
    for proc in our_processes(ctx.env[TOKEN_ENV]):
        if proc.get("state") and proc["state"] not in state_dirs:
            state_dirs.append(proc["state"])
    stopped = []
    for state in state_dirs:
        env = dict(ctx.env, XDG_STATE_HOME=state)
        _, out, _ = run_group([ctx.python, "-m", "opsconsole", "runs", "list", "--json"], 30, ctx, log,
                              f"runs list ({state})", env=env)
        try:
            runs = json.loads(out[out.find("["):]) if "[" in out else []
        except ValueError:
            runs = []
        for run in runs if isinstance(runs, list) else []:
            if isinstance(run, dict) and run.get("status") in ("starting", "running"):
                run_group([ctx.python, "-m", "opsconsole", "runs", "stop", str(run["id"]), "--grace", "3"], 30, ctx,
                          log, f"runs stop {run['id']}", env=env)
                stopped.append(str(run["id"]))
    return stopped


def run_step(step: Step, timeout: float, ctx: Context, log: Any) -> dict[str, Any]:
    """Run one step within `timeout` seconds; the record follows the results.json contract."""
    record: dict[str, Any] = {"id": step.id, "name": step.what, "budget_s": round(timeout, 1)}
    reason = step.skip(ctx) if step.skip else None
    if reason:
        record.update(status="skipped", seconds=0.0, summary=f"skipped: {reason}", reason=reason)
        return record
    if step.id == "setup" and not list((REPO / ".whl").glob("*.whl")):
        step = Step(step.id, step.what, step.budget, commands=step.commands[1:])
        record["installed"] = []
    started = time.monotonic()
    deadline = started + timeout
    status = None
    if step.tests:
        xml_path = ctx.work / f"{step.id}.junit.xml"
        xml_path.unlink(missing_ok=True)
        argv = [ctx.python, "-m", "pytest", *step.tests, "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:randomly",
                "-o", "addopts=", "-o", "junit_family=xunit1", f"--junitxml={xml_path}"]
        code, out, err = run_group(argv, timeout, ctx, log, f"{step.id}: pytest")
        if code is None:
            status = "timeout"
        if xml_path.is_file():
            record.update(read_junit(ctx, xml_path))
        if status is None:
            status = _pytest_status(ctx, record, code, out + err)
    else:
        for command in step.commands:
            left = deadline - time.monotonic()
            code, out, err = run_group(command.argv(ctx), left, ctx, log, f"{step.id}")
            if code is None:
                status = "timeout"
                break
            try:
                fields = command.read(ctx, out, code)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                status, record["reason"] = "failed", f"unreadable output ({exc}); stderr: {_last_line(err)}"
                break
            said = [record.get("summary"), fields.pop("summary", None), fields.pop("summary_extra", None)]
            record.update(fields)
            record["summary"] = "; ".join(s for s in said if s)
            if code not in command.ok_codes and record.get("status") != "failed":
                record.update(status="failed", reason=f"exit {code}: {_last_line(err)}")
            if record.get("status") == "failed":
                break
        status = status or record.get("status") or "ok"
    if status == "timeout":
        record["reason"] = f"no result within {timeout:.0f} s (the step's budget): its process group was killed"
    stopped = stop_our_runs(ctx, log, private=status == "timeout")
    if stopped:
        record["runs_stopped"] = stopped
    record["status"] = status
    record["seconds"] = round(time.monotonic() - started, 1)
    record["summary"] = summarise(ctx, record)
    return record


def _pytest_status(ctx: Context, record: dict[str, Any], code: int, output: str) -> str:
    tests = record.get("tests") or []
    counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "error", "skipped")}
    record["counts"] = counts
    if not tests:
        record["reason"] = f"pytest collected nothing (exit {code}): {_last_line(output)}"
        return "failed"
    if counts["failed"] or counts["error"]:
        bad = [t for t in tests if t["outcome"] in ("failed", "error")]
        record["reason"] = "; ".join(f"{t['test']}: {t.get('message', '')}" for t in bad)[:600]
        return "failed"
    if counts["passed"] == 0:
        skipped = "; ".join(f"{t['test']} skipped: {t.get('message', '')}" for t in tests)
        record["reason"] = f"no test passed ({skipped})"[:600]
        # with a GPU, a step whose tests all skipped proved nothing
        return "failed" if ctx.cuda else "skipped"
    return "ok"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "(no output)"


def _gib(value: Any) -> str:
    return f"{value / 2**30:.1f}" if isinstance(value, (int, float)) else "-"


# --- the figures next to their references --------------------------------------------------------

def add_references(ctx: Context, record: dict[str, Any]) -> None:
    """Each test's figures get their reference: decode vs the HBM ceiling, SD it/s vs published."""
    for test in record.get("tests") or []:
        fig = test.get("figures") or {}
        if "decode_tokens_per_s" in fig and "reference" not in fig:
            fig["reference"] = decode_reference(fig.get("decode_tokens_per_s"), fig.get("params"),
                                                fig.get("bytes_per_param", 2), ctx.facts.get("copy_bytes_per_s"),
                                                ctx.facts.get("gpu_name"))
        if "it_per_s" in fig and "reference" not in fig and fig.get("variant"):
            fig["reference"] = sd_reference(fig["it_per_s"], fig["variant"], ctx.facts.get("gpu_name"),
                                            ctx.facts.get("copy_bytes_per_s"))


def figure_text(fig: dict[str, Any]) -> str:
    ref = fig.get("reference") or {}
    if fig.get("decode_tokens_per_s", 0) is None:
        return f"compiled decode {fig.get('replay') or 'gave no figure'}: no tok/s reported"
    if "decode_tokens_per_s" in fig:
        text = f"decode {_num(fig['decode_tokens_per_s'])} tok/s"
        if ref.get("ceiling_tokens_per_s"):
            text += (f" = {100 * ref.get('fraction_of_ceiling', 0):.1f}% of the measured ceiling "
                     f"{ref['ceiling_tokens_per_s']:.0f} tok/s ({_num(ref['weight_bytes'] / 1e9)} GB weights / "
                     f"{ref['copy_bytes_per_s'] / 1e12:.2f} TB/s copy)")
        if ref.get("spec_ceiling_tokens_per_s"):
            text += f"; spec ceiling {ref['spec_ceiling_tokens_per_s']:.0f} tok/s ({ref['spec_gpu']})"
        if fig.get("replay"):
            text += f"; CUDA graphs: {fig['replay']}"
        return text
    if "it_per_s" in fig:
        text = f"{_num(fig['it_per_s'])} it/s"
        if ref.get("expected_it_per_s"):
            text += (f" = {ref['ratio_to_expected']:.2f}x the expected {ref['expected_it_per_s']:.0f} it/s "
                     f"(H100 {fig.get('variant')} {ref['published_h100_it_per_s']} it/s x {ref['scale']} "
                     f"{ref['scaled_by']}; stable-fast H100 {ref['stable_fast_h100_it_per_s']} it/s)")
        return text
    return ", ".join(f"{k} {_num(v)}" for k, v in fig.items() if isinstance(v, (int, float, str)))[:200]


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def summarise(ctx: Context, record: dict[str, Any]) -> str:
    if record.get("tests") is not None:
        add_references(ctx, record)
        parts = []
        counts = record.get("counts") or {}
        if counts:
            parts.append(", ".join(f"{v} {k}" for k, v in counts.items() if v))
        for test in record["tests"]:
            if test.get("figures"):
                parts.append(figure_text(test["figures"]))
        if record["status"] != "ok" and record.get("reason"):
            parts.append(record["reason"])
        return "; ".join(parts)
    if record["status"] != "ok":
        return record.get("reason") or record["status"]
    return record.get("summary") or "ok"


# --- results -------------------------------------------------------------------------------------

def write_results(ctx: Context, report: dict[str, Any]) -> None:
    """results.json and summary.md, each replaced atomically (a reader never sees half a file)."""
    for name, text in (("results.json", json.dumps(report, indent=2, default=str)),
                       ("summary.md", summary_markdown(report))):
        tmp = ctx.out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, ctx.out / name)


def summary_markdown(report: dict[str, Any]) -> str:
    lines = [f"# gpu_check ({report['device']})", "",
             f"{report['started']} on {report['host']}, python {report['python']}, {report['total_s']} s of "
             f"{report['budget_s']} s planned.", "",
             "| step | status | seconds | budget | result |", "|---|---|---|---|---|"]
    for r in report["steps"]:
        result = str(r.get("summary") or "").replace("|", "/").replace("\n", " ")[:600]
        lines.append(f"| {r['id']} | {r['status']} | {r.get('seconds', '-')} | {r.get('budget_s', '-')} | {result} |")
    if report.get("leftovers") is not None:
        lines += ["", report["leftovers_line"]]
    return "\n".join(lines) + "\n"


def our_processes(token: str) -> list[dict[str, Any]]:
    """Live processes whose environment carries our token (our children, their jobs and grandchildren)."""
    found = []
    needle = f"{TOKEN_ENV}={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if needle not in environ:
                continue
            stat = (entry / "stat").read_text()
            if stat[stat.rfind(")") + 2:].startswith("Z"):
                continue  # a zombie holds nothing
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        state = next((v[len(b"XDG_STATE_HOME="):].decode("utf-8", "replace") for v in environ
                      if v.startswith(b"XDG_STATE_HOME=")), None)
        found.append({"pid": int(entry.name), "cmd": cmd[:200], "state": state})
    return found


def final_cleanup(ctx: Context, log: Any, token: str) -> list[dict[str, Any]]:
    """Stop any run and kill any group of ours still alive; return what was still alive before that."""
    stop_our_runs(ctx, log)
    for pgid in ctx.facts.get("pgids", []):
        kill_group(pgid, grace=0.5)
    leftovers = [{k: p[k] for k in ("pid", "cmd")} for p in our_processes(token)]
    for proc in leftovers:
        try:
            os.kill(proc["pid"], signal.SIGKILL)
        except OSError:
            pass
    return leftovers


# --- main ----------------------------------------------------------------------------------------

def parse_step_timeouts(text: str | None) -> tuple[float | None, dict[str, float]]:
    """'5' -> every step 5 s; 'gemma-infer=1,nccl=3' -> those steps only."""
    if not text:
        return None, {}
    if "=" not in text:
        return _seconds(text), {}
    per_step = {}
    for part in text.split(","):
        step_id, _, value = part.partition("=")
        _known(step_id.strip(), "--step-timeout")
        per_step[step_id.strip()] = _seconds(value)
    return None, per_step


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SystemExit(_usage(f"--step-timeout {text!r}: give seconds, e.g. 5 or gemma-infer=1")) from None
    if value <= 0:
        raise SystemExit(_usage(f"--step-timeout {text}: must be more than 0 seconds"))
    return value


def _known(step_id: str, flag: str) -> str:
    if step_id not in STEP_IDS:
        raise SystemExit(_usage(f"{flag}: unknown step {step_id!r}; steps: {', '.join(STEP_IDS)}"))
    return step_id


def _usage(message: str) -> int:
    print(f"gpu_check: {message}", file=sys.stderr)
    return 3


def _id_list(text: str | None, flag: str) -> list[str]:
    return [_known(s.strip(), flag) for s in (text or "").split(",") if s.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", action="store_true", help="print the plan and run nothing")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--out", default=os.environ.get("OUT") or None)
    parser.add_argument("--only", default=None, help="comma-separated step ids: run only these")
    parser.add_argument("--skip", default=None, help="comma-separated step ids: leave these out")
    parser.add_argument("--step-timeout", default=None, help="S (every step) or ID=S,... (those steps)")
    parser.add_argument("--work", default=None, help="scratch dir (state, site, junit); default: a fresh temp dir")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 3 if exc.code else 0
    try:
        only, skip = _id_list(args.only, "--only"), _id_list(args.skip, "--skip")
        every, per_step = parse_step_timeouts(args.step_timeout)
    except SystemExit as exc:
        return int(exc.code or 3)
    steps = [s for s in PLAN if (not only or s.id in only) and s.id not in skip]
    budgets = {s.id: per_step.get(s.id, every or s.budget[args.device]) for s in PLAN}
    if args.plan:
        ctx = Context(args.device, Path("."), Path("."), sys.executable, {})
        print("\n".join(plan_lines(steps, args.device, budgets, ctx)))
        return 0
    if not args.out:
        return _usage("no output directory: pass --out DIR or set $OUT")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="opsconsole-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}-{time.time_ns()}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
               PYTHONUNBUFFERED="1", XDG_STATE_HOME=str(work / "state"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               **{TOKEN_ENV: token, DEVICE_ENV: args.device})
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    ctx = Context(args.device, out, work, sys.executable, env)
    started_wall = time.monotonic()
    deadline = started_wall + (sum(budgets[s.id] for s in steps) if (every or per_step) else TOTAL_BUDGET_S)
    report: dict[str, Any] = {"device": args.device, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                              "host": platform.node(), "python": f"{platform.python_version()} ({sys.executable})",
                              "budget_s": round(sum(budgets[s.id] for s in steps if not (s.skip and s.skip(ctx)))),
                              "total_s": 0.0, "steps": []}
    print("\n".join(plan_lines(steps, args.device, budgets, ctx)), file=sys.stderr, flush=True)
    with open(out / "gpu_check.log", "w", encoding="utf-8") as log:
        for step in steps:
            left = deadline - time.monotonic() - CLEANUP_RESERVE_S
            timeout = min(budgets[step.id], left)
            if timeout < 1:
                record = {"id": step.id, "name": step.what, "status": "skipped", "seconds": 0.0,
                          "summary": "skipped: the 8-minute plan has no time left", "reason": "out of time"}
            else:
                print(f"[gpu_check] {step.id} (budget {timeout:.0f} s)", file=sys.stderr, flush=True)
                record = run_step(step, timeout, ctx, log)
            print(f"[gpu_check]   -> {record['status']}: {record['summary']}"[:400], file=sys.stderr, flush=True)
            report["steps"].append(record)
            report["total_s"] = round(time.monotonic() - started_wall, 1)
            write_results(ctx, report)
        leftovers = final_cleanup(ctx, log, token)
    report["leftovers"] = leftovers
    report["leftovers_line"] = ("nothing of ours is left running (no run active, no process of this check alive)"
                                if not leftovers else
                                f"killed {len(leftovers)} process(es) of ours still running after the last step: "
                                + "; ".join(f"{p['pid']} {p['cmd'][:80]}" for p in leftovers))
    report["total_s"] = round(time.monotonic() - started_wall, 1)
    write_results(ctx, report)
    print(f"[gpu_check] {report['leftovers_line']}", file=sys.stderr, flush=True)
    sys.stdout.write(summary_markdown(report))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["status"] in ("ok", "skipped") for r in report["steps"]) and not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
