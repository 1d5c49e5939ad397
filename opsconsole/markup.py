"""User text into Rich/Textual markup: the one helper every screen and message uses.

Any string that came from a user, a log, a file name, a model or another process is
escaped here before it is placed inside markup, so `[/x]` cannot raise MarkupError and
`[rank0]` does not vanish. Emoji codes (`:smile:`) are not expanded because the
consoles that print user text are created with `emoji=False` (cli/common.py) and
Textual's markup has no emoji codes.
"""

from __future__ import annotations

import re

_BRACKET = re.compile(r"\[")


def escape_markup(text: object) -> str:
    """`text` as a literal inside Rich/Textual markup: brackets escaped, and control
    characters (ESC and friends) shown as `\\xNN` instead of reaching the terminal."""
    value = str(text)
    if any(ch < " " and ch not in "\t\n" for ch in value):
        value = "".join(ch if ch >= " " or ch in "\t\n" else f"\\x{ord(ch):02x}" for ch in value)
    # Every "[" is escaped, not only the ones that look like tags as rich.markup.escape does.
    # (A literal backslash right before "[" is the one case neither markup can keep.)
    return _BRACKET.sub(r"\\[", value)
