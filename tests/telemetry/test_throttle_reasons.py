"""Clock-event reason masks: the cases the mutation run found untested (docs/testing.md)."""

from __future__ import annotations

import pytest

from opsconsole.telemetry.throttle import THROTTLE_REASON_BITS, decode_throttle_reasons, encode_throttle_reasons


@pytest.mark.parametrize("bit", [0x200, 0x400, 0x800, 0x2000, 1 << 31])
def test_every_unknown_bit_is_named_whatever_its_position(bit: int) -> None:
    # odd and even positions above the known bits: a scan that skips positions misses some of them
    assert decode_throttle_reasons(bit | 0x4) == ("sw_power_cap", f"bit_{bit:#x}")


def test_several_unknown_bits_come_out_lowest_first() -> None:
    assert decode_throttle_reasons(0x200 | 0x400 | 0x40) == ("hw_thermal_slowdown", "bit_0x200", "bit_0x400")


def test_every_known_bit_decodes_to_its_own_name() -> None:
    for bit, name in THROTTLE_REASON_BITS.items():
        assert decode_throttle_reasons(bit) == (name,)
        assert encode_throttle_reasons([name]) == bit


def test_an_unknown_name_is_refused_with_the_name_and_the_known_ones() -> None:
    with pytest.raises(ValueError) as caught:
        encode_throttle_reasons(["sw_power_cap", "melting", "on_fire"])
    message = str(caught.value)
    assert "unknown throttle reason(s): melting, on_fire;" in message
    assert "known: gpu_idle, applications_clocks_setting, sw_power_cap," in message
