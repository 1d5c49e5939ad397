"""CUDA environment probe, run by opsconsole in the user's interpreter (`python -B this_file`).

Standard library only (plus whatever it probes); prints one JSON object on the
last line of stdout. Never imported by opsconsole itself.
"""

import importlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import warnings

ENV_VARS = ("CUDA_VISIBLE_DEVICES", "PYTORCH_CUDA_ALLOC_CONF", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE", "CUDA_HOME", "LD_LIBRARY_PATH", "NCCL_DEBUG")
IMPORTED = ("flash_attn", "xformers", "bitsandbytes")  # these fail at import time (ABI), so import them
METADATA_ONLY = ("transformers", "diffusers", "peft", "accelerate")  # slow to import; version suffices


def first_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def library(name, do_import):
    if importlib.util.find_spec(name) is None:
        return {"name": name, "version": None, "error": f"No module named '{name}'"}
    try:
        version = importlib.metadata.version(name.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        version = None
    if do_import:
        try:
            module = importlib.import_module(name)
            version = version or getattr(module, "__version__", None)
        except Exception as exc:  # noqa: BLE001 - the error text is the result
            return {"name": name, "version": version, "error": first_line(exc)}
    return {"name": name, "version": version, "error": None}


def torch_facts():
    try:
        import torch
    except ImportError as exc:
        return {"status": "no_torch", "message": first_line(exc)}
    out = {"status": "ok", "torch_version": torch.__version__, "torch_cuda": torch.version.cuda}
    try:
        out["cudnn_version"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    except Exception:  # noqa: BLE001
        out["cudnn_version"] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = bool(torch.cuda.is_available())
    out["cuda_available"] = available
    out["cuda_error"] = None
    if not available:
        messages = [str(w.message) for w in caught]
        if torch.version.cuda:
            try:
                torch.cuda.init()
            except Exception as exc:  # noqa: BLE001
                messages.append(str(exc))
        out["cuda_error"] = (messages[-1].strip()[:500] if messages
                             else ("torch is a CPU-only build" if not torch.version.cuda else "no CUDA device visible"))
    out["device_count"] = torch.cuda.device_count() if available else 0
    devices = []
    for i in range(out["device_count"]):
        try:
            major, minor = torch.cuda.get_device_capability(i)
            devices.append({"index": i, "name": torch.cuda.get_device_name(i), "capability": f"{major}.{minor}"})
        except Exception as exc:  # noqa: BLE001
            devices.append({"index": i, "name": None, "capability": None, "error": first_line(exc)})
    out["devices"] = devices
    try:
        out["arch_list"] = list(torch.cuda.get_arch_list())
    except Exception:  # noqa: BLE001
        out["arch_list"] = []
    try:
        out["bf16_supported"] = bool(torch.cuda.is_bf16_supported()) if available else False
    except Exception:  # noqa: BLE001
        out["bf16_supported"] = None
    out["sdpa_available"] = hasattr(torch.nn.functional, "scaled_dot_product_attention")
    return out


def main():
    result = {"python": sys.executable, "python_version": sys.version.split()[0]}
    result.update(torch_facts())
    result["libraries"] = [library(n, True) for n in IMPORTED] + [library(n, False) for n in METADATA_ONLY]
    result["env"] = {name: os.environ.get(name) for name in ENV_VARS}
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
