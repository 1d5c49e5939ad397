"""Clock-event ("throttle") reasons: NVML bit masks <-> stable names.

Bit values are NVML's `nvmlClocksEventReason*` constants (nvml.h). The names are
what snapshots, findings, the TUI and `--json` use.
"""

from __future__ import annotations

# bit -> name, in nvml.h order
THROTTLE_REASON_BITS: dict[int, str] = {
    0x0001: "gpu_idle",
    0x0002: "applications_clocks_setting",
    0x0004: "sw_power_cap",
    0x0008: "hw_slowdown",
    0x0010: "sync_boost",
    0x0020: "sw_thermal_slowdown",
    0x0040: "hw_thermal_slowdown",
    0x0080: "hw_power_brake_slowdown",
    0x0100: "display_clock_setting",
}
THROTTLE_REASON_NAMES = tuple(THROTTLE_REASON_BITS.values())

# Reasons that mean "the GPU runs slower than it could under load" (not idle, not
# a clock the user chose). These are what DCGM reports as clock-throttle violations.
THERMAL_REASONS = frozenset({"sw_thermal_slowdown", "hw_thermal_slowdown"})
HW_SLOWDOWN_REASONS = frozenset({"hw_slowdown", "hw_power_brake_slowdown"})
POWER_REASONS = frozenset({"sw_power_cap"})


def decode_throttle_reasons(mask: int | None) -> tuple[str, ...]:
    """Names of the bits set in `mask`; unknown bits come out as `bit_0x...`."""
    if not mask:
        return ()
    names = [name for bit, name in THROTTLE_REASON_BITS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASON_BITS)
    bit = 1
    while unknown:
        if unknown & bit:
            names.append(f"bit_{bit:#x}")
            unknown &= ~bit
        bit <<= 1
    return tuple(names)


def encode_throttle_reasons(names: tuple[str, ...] | list[str]) -> int:
    """Inverse of decode_throttle_reasons for known names (used by the simulator and tests)."""
    by_name = {name: bit for bit, name in THROTTLE_REASON_BITS.items()}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown throttle reason(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
    mask = 0
    for name in names:
        mask |= by_name[name]
    return mask
