"""Which GPU architectures a torch build can run on (CUDA binary compatibility rules).

NVIDIA CUDA C Programming Guide, "Binary Compatibility" / "PTX Compatibility":
- a cubin built for sm_XY runs on devices of capability X.Z with Z >= Y (same major);
- PTX built for compute_XY can be JIT-compiled for any capability >= X.Y;
- arch-specific targets (sm_90a, sm_100a) run only on exactly that capability.
"""

from __future__ import annotations

import re

_ARCH = re.compile(r"^(?P<kind>sm|compute)_(?P<num>\d+)(?P<suffix>[af]?)$")


def capability_tuple(capability: str | None) -> tuple[int, int] | None:
    """"9.0" -> (9, 0); None or junk -> None."""
    if not capability:
        return None
    major, _, minor = str(capability).partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return None


def _arch_tuple(num: str) -> tuple[int, int]:
    return int(num[:-1]), int(num[-1])  # "90" -> (9, 0), "120" -> (12, 0)


def arch_supports(capability: str | None, arch_list: tuple[str, ...] | list[str]) -> bool | None:
    """True if a build with `arch_list` (torch.cuda.get_arch_list()) runs on `capability`."""
    cap = capability_tuple(capability)
    if cap is None or not arch_list:
        return None
    for arch in arch_list:
        found = _ARCH.match(arch.strip())
        if not found:
            continue
        target = _arch_tuple(found["num"])
        if found["kind"] == "compute":
            if target <= cap:
                return True
        elif found["suffix"]:
            if target == cap:
                return True
        elif target[0] == cap[0] and target[1] <= cap[1]:
            return True
    return False


def all_supported(capabilities: list[str | None], arch_list: tuple[str, ...] | list[str]) -> bool | None:
    """True if every capability is supported, False if one is not, None if unknown."""
    verdicts = [arch_supports(c, arch_list) for c in capabilities]
    if any(v is False for v in verdicts):
        return False
    if verdicts and all(v is True for v in verdicts):
        return True
    return None


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    """"12.4" -> (12, 4); "2.5.1+cu121" -> (2, 5, 1)."""
    if not version:
        return None
    numbers = re.findall(r"\d+", str(version).split("+")[0])
    return tuple(int(n) for n in numbers) or None
