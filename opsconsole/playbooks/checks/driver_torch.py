"""Driver and torch checks: driver version, CUDA support, torch build, GPU arch, bf16, SDPA."""

from __future__ import annotations

from typing import Any

from ...telemetry.snapshot import CudaEnv
from ..context import PlaybookContext
from ..results import ERROR, FAIL, PASS, SKIP, WARN, CheckResult
from .common import NVML_PROBLEMS, sm_arch, version_at_least, version_tuple
from .registry import Param, check

# Newest PyTorch wheel index a driver supporting CUDA X.Y can run.
_WHEELS = ((12, 8, "cu128"), (12, 6, "cu126"), (12, 4, "cu124"), (12, 1, "cu121"), (11, 8, "cu118"))


def torch_wheel_advice(driver_cuda: str | None) -> str:
    """pip command for a CUDA build of torch the installed driver can run."""
    if driver_cuda:
        have = version_tuple(driver_cuda) + (0, 0)
        for major, minor, tag in _WHEELS:
            if have[:2] >= (major, minor):
                return f"`pip install torch --index-url https://download.pytorch.org/whl/{tag}` (the driver supports CUDA {driver_cuda})"
    return "`pip install torch --index-url https://download.pytorch.org/whl/cu124` (pick the cuXYZ your driver supports, see `nvidia-smi`)"


def _env_problem(env: CudaEnv, ctx: PlaybookContext, missing_torch_status: str) -> CheckResult | None:
    """Result to return when the CUDA env probe has nothing to judge."""
    evidence = {"python": env.python or ctx.settings.python, "probe_status": env.status, "message": env.message}
    if env.status == "no_torch":
        return CheckResult(missing_torch_status, f"torch is not installed in {evidence['python']}", evidence,
                           f"Install a CUDA build of torch into that interpreter: {torch_wheel_advice(ctx.nvml.cuda_driver_version)}."
                           if missing_torch_status != SKIP else None)
    if env.status != "ok":
        return CheckResult(ERROR, f"the CUDA env probe did not finish ({env.status}: {env.message})", evidence)
    return None


@check("driver_min_version", "The NVIDIA driver is at least `min_version`.", "NVML driver version",
       min_version=Param("version", help='e.g. "535.104"'))
def driver_min_version(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    nvml = ctx.nvml
    evidence = {"driver_version": nvml.driver_version, "min_version": str(p["min_version"]), "nvml_status": nvml.status}
    if nvml.status != "ok" or not nvml.driver_version:
        return CheckResult(FAIL, f"no driver version: {NVML_PROBLEMS.get(nvml.status, nvml.status)}", evidence,
                           "Install or repair the NVIDIA driver first (see the driver-mismatch playbook).")
    if version_at_least(nvml.driver_version, p["min_version"]):
        return CheckResult(PASS, f"driver {nvml.driver_version} ≥ {p['min_version']}", evidence)
    return CheckResult(FAIL, f"driver {nvml.driver_version} is older than {p['min_version']}", evidence,
                       f"Upgrade the NVIDIA driver to {p['min_version']} or newer (then reboot), or use software "
                       "built for the older driver.")


@check("driver_supports_cuda", "The driver supports CUDA `cuda` (default: the CUDA version torch was built with).",
       "NVML CUDA driver version, torch.version.cuda from the env probe",
       cuda=Param("version", "", 'CUDA version needed, e.g. "12.4"; empty = what torch was built with'), probe=True)
def driver_supports_cuda(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    nvml, env = ctx.nvml, ctx.snapshot.cuda_env
    need = str(p["cuda"]) if p["cuda"] else env.torch_cuda
    evidence = {"driver_version": nvml.driver_version, "driver_cuda": nvml.cuda_driver_version,
                "needed_cuda": need, "torch_version": env.torch_version}
    if not need:
        reason = "torch is a CPU-only build" if env.status == "ok" else f"no torch to compare ({env.status})"
        return CheckResult(SKIP, f"nothing to compare: {reason}", evidence)
    if nvml.status != "ok" or not nvml.cuda_driver_version:
        return CheckResult(SKIP, f"not checked: {NVML_PROBLEMS.get(nvml.status, 'the driver does not report its CUDA version')}", evidence)
    have, want = version_tuple(nvml.cuda_driver_version), version_tuple(need)
    if version_at_least(nvml.cuda_driver_version, need):
        return CheckResult(PASS, f"driver supports CUDA {nvml.cuda_driver_version} ≥ {need}", evidence)
    remedy = (f"Upgrade the driver to one supporting CUDA {need}, or install a torch build for the CUDA this driver "
              f"supports: {torch_wheel_advice(nvml.cuda_driver_version)}.")
    if have[:1] == want[:1]:
        return CheckResult(WARN, f"driver supports CUDA {nvml.cuda_driver_version}, software was built for {need} "
                           "(minor-version compatibility: most kernels run, PTX JIT and newest features fail)", evidence, remedy)
    return CheckResult(FAIL, f"driver supports CUDA {nvml.cuda_driver_version}, software needs {need}", evidence, remedy)


@check("torch_cuda_available", "torch in the probe interpreter is a CUDA build and `torch.cuda.is_available()`.",
       "CUDA env probe (subprocess of --python): torch version, torch.version.cuda, is_available, the CUDA error", probe=True)
def torch_cuda_available(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    env = ctx.snapshot.cuda_env
    problem = _env_problem(env, ctx, FAIL)
    if problem:
        return problem
    evidence = {"python": env.python, "torch_version": env.torch_version, "torch_cuda": env.torch_cuda,
                "cuda_available": env.cuda_available, "cuda_error": env.cuda_error, "device_count": env.device_count,
                "CUDA_VISIBLE_DEVICES": env.env_value("CUDA_VISIBLE_DEVICES")}
    if not env.torch_cuda:
        return CheckResult(FAIL, f"torch {env.torch_version} is a CPU-only build", evidence,
                           f"Replace it with a CUDA build in {env.python}: `pip uninstall -y torch` then "
                           f"{torch_wheel_advice(ctx.nvml.cuda_driver_version)}.")
    if env.cuda_available:
        return CheckResult(PASS, f"torch {env.torch_version} (CUDA {env.torch_cuda}) sees {env.device_count} GPU(s)", evidence)
    cvd = env.env_value("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip() in ("", "-1", "none", "NoDevFiles"):
        remedy = f"CUDA_VISIBLE_DEVICES={cvd!r} hides every GPU: unset it or list the GPUs to use."
    elif ctx.nvml.status != "ok":
        remedy = f"The driver is not usable ({NVML_PROBLEMS.get(ctx.nvml.status, ctx.nvml.status)}): run the driver-mismatch playbook."
    else:
        remedy = (f"torch was built for CUDA {env.torch_cuda}; the driver supports CUDA {ctx.nvml.cuda_driver_version}. "
                  f"If the driver is older, {torch_wheel_advice(ctx.nvml.cuda_driver_version)}; otherwise read the CUDA error above.")
    return CheckResult(FAIL, "torch.cuda.is_available() is False" + (f": {env.cuda_error}" if env.cuda_error else ""),
                       evidence, remedy)


def _covered(capability: str, arch_list: tuple[str, ...]) -> bool:
    """Can torch run on a GPU of `capability`?

    Yes when its arch list has sm_XY for it, a same-major lower-minor cubin (an
    sm_80 binary runs on 8.6), or PTX (compute_XY) for an arch ≤ the GPU's,
    which the driver JIT-compiles at load.
    """
    cap = (version_tuple(capability) + (0, 0))[:2]
    for entry in arch_list:
        kind, _, digits = entry.partition("_")
        if len(digits) < 2 or not digits.isdigit():
            continue
        built = (int(digits[:-1]), int(digits[-1]))
        if kind == "compute" and built <= cap:
            return True
        if kind == "sm" and built[0] == cap[0] and built[1] <= cap[1]:
            return True
    return False


@check("torch_arch_covers_gpu", "torch's compiled arch list (sm_XY / PTX) covers every GPU's compute capability.",
       "CUDA env probe: torch.cuda.get_arch_list(), device capabilities (NVML capability as fallback)", probe=True)
def torch_arch_covers_gpu(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    env = ctx.snapshot.cuda_env
    problem = _env_problem(env, ctx, SKIP)
    if problem:
        return problem
    if not env.torch_cuda:
        return CheckResult(SKIP, f"torch {env.torch_version} is a CPU-only build", {"torch_version": env.torch_version})
    caps = {d.index: (d.name, d.capability) for d in env.devices if d.capability}
    if not caps:
        caps = {g.index: (g.name, g.compute_capability) for g in ctx.snapshot.gpus if g.compute_capability}
    evidence = {"torch_version": env.torch_version, "arch_list": list(env.arch_list),
                "gpus": {str(i): {"name": n, "capability": c, "arch": sm_arch(c)} for i, (n, c) in caps.items()}}
    if not caps:
        return CheckResult(SKIP, "no GPU capability known", evidence)
    if not env.arch_list:
        return CheckResult(SKIP, "torch did not report its arch list", evidence)
    missing = {i: (n, c) for i, (n, c) in caps.items() if not _covered(c, env.arch_list)}
    if not missing:
        return CheckResult(PASS, "arch list " + " ".join(env.arch_list) + " covers " +
                           ", ".join(sorted({sm_arch(c) or '?' for _, c in caps.values()})), evidence)
    first = next(iter(missing.values()))
    return CheckResult(
        FAIL,
        f"torch {env.torch_version} was built for {' '.join(env.arch_list)} but GPU "
        + ", ".join(f"{i} ({n}) is {sm_arch(c)}" for i, (n, c) in missing.items()),
        evidence,
        f"Kernels for {sm_arch(first[1])} are missing (\"no kernel image is available for execution on the device\"). "
        f"Install a torch build that includes {sm_arch(first[1])}: newer GPUs need newer wheels, e.g. "
        f"{torch_wheel_advice(ctx.nvml.cuda_driver_version)}; extensions you compile yourself need "
        f"`TORCH_CUDA_ARCH_LIST=\"{first[1]}\"`.",
    )


@check("bf16_supported", "The GPU supports bfloat16 (compute capability ≥ 8.0).",
       "CUDA env probe torch.cuda.is_bf16_supported(), NVML compute capability as fallback",
       required=Param("bool", False, "fail (instead of warn) when bf16 is missing"), probe=True)
def bf16_supported(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    env = ctx.snapshot.cuda_env
    caps = [d.capability for d in env.devices if d.capability] or \
        [g.compute_capability for g in ctx.snapshot.gpus if g.compute_capability]
    # torch's answer means something only where it reached a GPU; else judge the NVML capability.
    supported = env.bf16_supported if env.cuda_available else None
    if supported is None and caps:
        supported = all(version_tuple(c)[:1] >= (8,) for c in caps)
    evidence = {"bf16_supported": supported, "capabilities": caps, "source": "probe" if env.cuda_available and env.bf16_supported is not None else "capability"}
    if supported is None:
        return CheckResult(SKIP, "no CUDA GPU to ask", evidence)
    if supported:
        return CheckResult(PASS, "bf16 is supported", evidence)
    return CheckResult(FAIL if p["required"] else WARN, f"bf16 is not supported (compute capability {', '.join(caps)})", evidence,
                       "Use fp16 with loss scaling (`torch.amp.GradScaler`, `fp16=True` in Trainer) or fp32; fp16 "
                       "overflows above 65504, so keep gradient clipping on and watch for inf/NaN.")


@check("sdpa_available", "torch has scaled_dot_product_attention (or xformers is installed).",
       "CUDA env probe: torch SDPA, xformers / flash_attn versions", probe=True)
def sdpa_available(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    env = ctx.snapshot.cuda_env
    problem = _env_problem(env, ctx, SKIP)
    if problem:
        return problem
    libs = {name: (env.library(name).version if env.library(name) else None) for name in ("xformers", "flash_attn")}
    evidence = {"torch_version": env.torch_version, "sdpa_available": env.sdpa_available, **libs}
    if env.sdpa_available or any(libs.values()):
        return CheckResult(PASS, "fused attention available (" + ", ".join(
            [n for n, ok in (("sdpa", env.sdpa_available), *libs.items()) if ok]) + ")", evidence)
    if env.sdpa_available is None:
        return CheckResult(SKIP, "the probe did not report SDPA", evidence)
    return CheckResult(WARN, f"no fused attention: torch {env.torch_version} lacks SDPA and xformers is missing", evidence,
                       "Upgrade to torch ≥ 2.0 (SDPA is used by transformers and diffusers automatically); attention "
                       "then needs far less memory and time.")
