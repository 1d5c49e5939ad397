"""Driver, torch and Python-environment checks: pass and fail paths."""

from __future__ import annotations

import sys

from pb_builders import cuda_env, gpu, snapshot

from opsconsole.config import Settings
from opsconsole.telemetry.snapshot import CudaDevice, LibraryInfo, NvmlState

REAL = dict(source="nvml")  # not simulated: module checks run the probe interpreter for real


def test_driver_min_version(run_check):
    snap = snapshot((gpu(),), nvml=NvmlState(status="ok", driver_version="535.104.05", cuda_driver_version="12.2"))
    assert run_check("driver_min_version", snap, min_version="535.104").status == "pass"
    old = run_check("driver_min_version", snap, min_version="550")
    assert old.status == "fail" and "535.104.05" in old.summary


def test_driver_supports_cuda_compares_with_torchs_cuda(run_check):
    nvml = NvmlState(status="ok", driver_version="535.183.01", cuda_driver_version="12.2")
    assert run_check("driver_supports_cuda", snapshot((gpu(),), nvml=nvml, env=cuda_env(torch_cuda="12.1"))).status == "pass"
    minor = run_check("driver_supports_cuda", snapshot((gpu(),), nvml=nvml, env=cuda_env(torch_cuda="12.4")))
    assert minor.status == "warn" and "minor-version" in minor.summary
    major = run_check("driver_supports_cuda", snapshot((gpu(),), nvml=nvml), cuda="13.0")
    assert major.status == "fail" and "whl/cu121" in major.remedy  # newest wheel a 12.2 driver runs
    cpu = run_check("driver_supports_cuda", snapshot((gpu(),), env=cuda_env(torch_cuda=None)))
    assert cpu.status == "skip"


def test_torch_cuda_available(run_check):
    assert run_check("torch_cuda_available", snapshot((gpu(),))).status == "pass"
    cpu = run_check("torch_cuda_available", snapshot((gpu(),), env=cuda_env(torch_version="2.5.1+cpu", torch_cuda=None,
                                                                          cuda_available=False)))
    assert cpu.status == "fail" and "CPU-only" in cpu.summary and "download.pytorch.org/whl/cu124" in cpu.remedy
    hidden = run_check("torch_cuda_available", snapshot((gpu(),), env=cuda_env(
        cuda_available=False, env=(("CUDA_VISIBLE_DEVICES", ""),))))
    assert hidden.status == "fail" and "hides every GPU" in hidden.remedy
    missing = run_check("torch_cuda_available", snapshot((gpu(),), env=cuda_env(status="no_torch", torch_version=None)))
    assert missing.status == "fail" and "not installed" in missing.summary
    timeout = run_check("torch_cuda_available", snapshot((gpu(),), env=cuda_env(status="timeout", message="30 s")))
    assert timeout.status == "error"


def test_torch_arch_covers_gpu(run_check):
    assert run_check("torch_arch_covers_gpu", snapshot((gpu(),))).status == "pass"
    blackwell = cuda_env(devices=(CudaDevice(0, "NVIDIA GeForce RTX 5090", "12.0"),), arch_list=("sm_80", "sm_86", "sm_90"))
    result = run_check("torch_arch_covers_gpu", snapshot((gpu(capability="12.0"),), env=blackwell))
    assert result.status == "fail"
    assert "sm_120" in result.summary and "sm_90" in result.summary and "TORCH_CUDA_ARCH_LIST" in result.remedy
    # PTX for an older arch is JIT-compiled; a same-major lower-minor cubin runs too
    ptx = cuda_env(devices=(CudaDevice(0, "GPU", "12.0"),), arch_list=("sm_90", "compute_90"))
    assert run_check("torch_arch_covers_gpu", snapshot((gpu(),), env=ptx)).status == "pass"
    ada = cuda_env(devices=(CudaDevice(0, "L40S", "8.9"),), arch_list=("sm_80",))
    assert run_check("torch_arch_covers_gpu", snapshot((gpu(),), env=ada)).status == "pass"


def test_bf16_supported(run_check):
    assert run_check("bf16_supported", snapshot((gpu(),))).status == "pass"
    turing = cuda_env(bf16_supported=False, devices=(CudaDevice(0, "Tesla T4", "7.5"),))
    result = run_check("bf16_supported", snapshot((gpu(capability="7.5"),), env=turing))
    assert result.status == "warn" and "GradScaler" in result.remedy
    assert run_check("bf16_supported", snapshot((gpu(capability="7.5"),), env=turing), required=True).status == "fail"


def test_sdpa_available(run_check):
    assert run_check("sdpa_available", snapshot((gpu(),))).status == "pass"
    old = run_check("sdpa_available", snapshot((gpu(),), env=cuda_env(torch_version="1.13.1", sdpa_available=False)))
    assert old.status == "warn" and "torch ≥ 2.0" in old.remedy
    xformers = cuda_env(sdpa_available=False, libraries=(LibraryInfo("xformers", "0.0.28"),))
    assert run_check("sdpa_available", snapshot((gpu(),), env=xformers)).status == "pass"


def test_module_importable_runs_the_probe_interpreter(run_check):
    snap = snapshot((gpu(),), env=cuda_env(libraries=()), **REAL)
    settings = Settings(python=sys.executable)
    found = run_check("module_importable", snap, settings=settings, module="yaml", min_version="5.0")
    assert found.status == "pass" and found.evidence["version"] and found.evidence["source"] == "probe"
    missing = run_check("module_importable", snap, settings=settings, module="no_such_module_opsconsole")
    assert missing.status == "fail" and "ModuleNotFoundError" in missing.summary
    assert run_check("module_importable", snap, settings=settings, module="no_such_module_opsconsole",
                     required=False).status == "warn"
    too_new = run_check("module_importable", snap, settings=settings, module="yaml", max_version="1.0")
    assert too_new.status == "fail" and "<1.0" in too_new.remedy


def test_module_importable_uses_the_env_probes_library_list(run_check):
    env = cuda_env(libraries=(LibraryInfo("flash_attn", None, "No module named 'flash_attn'"), LibraryInfo("xformers", "0.0.20")))
    assert run_check("module_importable", snapshot((gpu(),), env=env), module="flash_attn").status == "fail"
    old = run_check("module_importable", snapshot((gpu(),), env=env), module="xformers", min_version="0.0.27")
    assert old.status == "fail" and "0.0.20" in old.summary


def test_env_var_alloc_conf_syntax(run_check):
    def conf(value):
        env = cuda_env(env=(("PYTORCH_CUDA_ALLOC_CONF", value),))
        return run_check("env_var", snapshot((gpu(),), env=env), name="PYTORCH_CUDA_ALLOC_CONF", expect="valid")

    assert conf("expandable_segments:True,max_split_size_mb:128").status == "pass"
    assert conf("roundup_power2_divisions:[256:1,512:2],garbage_collection_threshold:0.6").status == "pass"
    bad_bool = conf("expandable_segments:true")
    assert bad_bool.status == "fail" and "capitalised" in bad_bool.summary
    assert "unknown option" in conf("max_split_mb:128").summary
    assert conf("max_split_size_mb=128").status == "fail"
    assert conf(None).status == "pass"  # unset: nothing to validate


def test_env_var_recommend_appends_to_alloc_conf(run_check):
    env = cuda_env(env=(("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:128"),))
    result = run_check("env_var", snapshot((gpu(),), env=env), name="PYTORCH_CUDA_ALLOC_CONF", expect="valid",
                       recommend="expandable_segments:True")
    assert result.status == "warn"
    assert "PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:128,expandable_segments:True" in result.remedy


def test_env_var_cuda_visible_devices_against_gpu_count(run_check):
    def cvd(value):
        env = cuda_env(env=(("CUDA_VISIBLE_DEVICES", value),))
        return run_check("env_var", snapshot((gpu(0), gpu(1)), env=env, source="nvml"), name="CUDA_VISIBLE_DEVICES",
                         expect="valid")

    assert cvd("0,1").status == "pass"
    assert cvd("GPU-00000001").status == "pass"
    too_high = cvd("0,2")
    assert too_high.status == "fail" and "2 GPU(s)" in too_high.summary
    assert cvd("").status == "fail"
    assert "twice" in cvd("1,1").summary
    assert cvd("GPU-ffff").status == "fail"


def test_env_var_set_unset_and_secret_values(run_check):
    snap = snapshot((gpu(),), env=cuda_env(env=()))
    assert run_check("env_var", snap, environ={"NCCL_DEBUG": "INFO"}, name="NCCL_DEBUG", expect="set").status == "pass"
    unset = run_check("env_var", snap, environ={}, name="NCCL_DEBUG", expect="set", value="INFO")
    assert unset.status == "warn" and unset.remedy.startswith("`export NCCL_DEBUG=INFO`")
    blocking = run_check("env_var", snap, environ={"CUDA_LAUNCH_BLOCKING": "1"}, name="CUDA_LAUNCH_BLOCKING",
                         expect="unset", severity="fail")
    assert blocking.status == "fail"
    secret = run_check("env_var", snap, environ={"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz"}, name="HF_TOKEN", expect="set")
    assert secret.status == "pass" and "hf_abc" not in str(secret.evidence) and "hf_abc" not in secret.summary


def test_module_importable_with_a_missing_interpreter(run_check):
    snap = snapshot((gpu(),), env=cuda_env(libraries=()), **REAL)
    result = run_check("module_importable", snap, settings=Settings(python="/nonexistent/bin/python"), module="yaml")
    assert result.status == "fail" and "/nonexistent/bin/python" in result.summary
