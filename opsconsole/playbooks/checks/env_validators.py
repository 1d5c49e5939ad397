"""Validators for environment variables whose syntax matters (`env_var` with `expect: valid`).

Each validator gets (value, context) and returns a problem string or None.
"""

from __future__ import annotations

from collections.abc import Callable

from ..context import PlaybookContext

_TRUE_FALSE = ("True", "False")
# Variables holding comma-separated settings: a recommended setting is appended, not substituted.
COMMA_LIST_VARS = frozenset({"PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"})


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside [...] (roundup_power2_divisions:[256:1,512:2])."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _alloc_conf(value: str, ctx: PlaybookContext) -> str | None:
    def is_int(v: str) -> bool:
        return v.isdigit()

    def is_fraction(v: str) -> bool:
        try:
            return 0 < float(v) < 1
        except ValueError:
            return False

    rules: dict[str, tuple[Callable[[str], bool], str]] = {
        "backend": (lambda v: v in ("native", "cudaMallocAsync"), "native or cudaMallocAsync"),
        "max_split_size_mb": (lambda v: is_int(v) and int(v) > 20, "an integer > 20"),
        "roundup_power2_divisions": (lambda v: is_int(v) or (v.startswith("[") and v.endswith("]")), "an integer or [size:div,...]"),
        "garbage_collection_threshold": (is_fraction, "a number between 0 and 1"),
        "expandable_segments": (lambda v: v in _TRUE_FALSE, "True or False (capitalised)"),
        "pinned_use_cuda_host_register": (lambda v: v in _TRUE_FALSE, "True or False"),
        "pinned_use_background_threads": (lambda v: v in _TRUE_FALSE, "True or False"),
        "pinned_num_register_threads": (is_int, "an integer"),
        "release_lock_on_cudamalloc": (lambda v: v in _TRUE_FALSE, "True or False"),
    }
    for entry in _split_top_level(value):
        key, sep, setting = entry.partition(":")
        key = key.strip()
        if not sep:
            return f"`{entry}` is not key:value (e.g. expandable_segments:True)"
        if key not in rules:
            return f"unknown option `{key}` (known: {', '.join(rules)})"
        test, expected = rules[key]
        if not test(setting.strip()):
            return f"`{key}` must be {expected}, got `{setting.strip()}`"
    return None


def _visible_devices(value: str, ctx: PlaybookContext) -> str | None:
    tokens = [t.strip() for t in value.split(",")]
    if value.strip() in ("", "-1", "none", "NoDevFiles"):
        return f"`{value}` hides every GPU from CUDA"
    count = len(ctx.snapshot.gpus) if ctx.nvml.status == "ok" else None
    uuids = {g.uuid for g in ctx.snapshot.gpus if g.uuid}
    uuids |= {m.uuid for g in ctx.snapshot.gpus for m in g.mig_devices if m.uuid}
    seen: set[str] = set()
    for token in tokens:
        if token in seen:
            return f"GPU `{token}` is listed twice (CUDA then sees no device)"
        seen.add(token)
        if token.isdigit():
            if count is not None and int(token) >= count:
                return f"index {token} does not exist: this machine has {count} GPU(s) (indices 0–{count - 1}); CUDA ignores it and every entry after it"
        elif token.startswith(("GPU-", "MIG-")):
            # Simulated machines carry synthetic UUIDs, so only a real machine's list is authoritative.
            if uuids and not ctx.simulated and not any(u.startswith(token) for u in uuids):
                return f"`{token}` matches no GPU/MIG UUID on this machine (see `nvidia-smi -L`)"
        else:
            return f"`{token}` is neither an index nor a GPU-/MIG- UUID; CUDA ignores it and every entry after it"
    return None


def _one_of(*values: str) -> Callable[[str, PlaybookContext], str | None]:
    def validate(value: str, ctx: PlaybookContext) -> str | None:
        return None if value in values else f"must be one of {', '.join(values)}, got `{value}`"
    return validate


_BOOLEAN = _one_of("0", "1", "true", "false", "True", "False", "yes", "no", "ON", "OFF")

VALIDATORS: dict[str, Callable[[str, PlaybookContext], str | None]] = {
    "PYTORCH_CUDA_ALLOC_CONF": _alloc_conf,
    "PYTORCH_ALLOC_CONF": _alloc_conf,
    "CUDA_VISIBLE_DEVICES": _visible_devices,
    "NCCL_DEBUG": _one_of("VERSION", "WARN", "INFO", "TRACE"),
    "NCCL_P2P_DISABLE": _BOOLEAN,
    "NCCL_IB_DISABLE": _BOOLEAN,
    "NCCL_SHM_DISABLE": _BOOLEAN,
    "CUDA_LAUNCH_BLOCKING": _BOOLEAN,
    "HF_HUB_OFFLINE": _BOOLEAN,
    "TRANSFORMERS_OFFLINE": _BOOLEAN,
}
