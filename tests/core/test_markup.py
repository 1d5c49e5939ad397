"""User text into markup: brackets, emoji codes and control characters stay literal."""

from __future__ import annotations

import io

import pytest
from rich.text import Text

from opsconsole.cli import common
from opsconsole.markup import escape_markup


@pytest.mark.parametrize("raw", ["/tmp/nope[/x].log", "[rank0]: NCCL", "[c10d] store", "my[/model]",
                                 "[bold]x[/bold]", "[link=http://evil]y[/link]"])
def test_markup_round_trips_as_literal_text(raw):
    assert Text.from_markup(escape_markup(raw)).plain == raw


def test_control_characters_are_shown_not_sent():
    shown = Text.from_markup(escape_markup("red \x1b[31mtext\x07")).plain
    assert "\x1b" not in shown and "\x07" not in shown and "\\x1b[31mtext" in shown


def test_cli_consoles_do_not_expand_emoji_codes(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(common.sys, "stderr", buf)
    common.print_error("bad path /tmp/:smile:.log and --device cuda:abc")
    text = buf.getvalue()
    assert ":smile:" in text and "cuda:abc" in text and "😄" not in text


@pytest.mark.parametrize("raw", ["/tmp/nope[/x].log", "[rank0]: x", "[bold]y[/]"])
def test_textual_markup_shows_the_same_literal(raw):
    from textual.content import Content

    assert Content.from_markup(escape_markup(raw)).plain == raw
