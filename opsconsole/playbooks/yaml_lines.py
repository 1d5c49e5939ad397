"""YAML loading that remembers line numbers, so validation errors can say `file:line`.

`load_with_lines(text)` returns plain Python values, except that mappings are
`LineDict` and sequences are `LineList`: they carry `.line` (1-based line of the
node) and `.lines` (line of each key / item), so a validator can point at the
exact field that is wrong.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..userfiles import ALIAS_REFUSED, first_alias_line


class LineDict(dict):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line: int = 0
        self.lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


class LineList(list):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.line: int = 0
        self.lines: list[int] = []

    def line_of(self, index: int) -> int:
        return self.lines[index] if 0 <= index < len(self.lines) else self.line


class YamlLineError(ValueError):
    def __init__(self, line: int | None, what: str) -> None:
        super().__init__(what)
        self.line, self.what = line, what


def line_of(value: Any, default: int = 0) -> int:
    return getattr(value, "line", default) or default


# libyaml's parser when available (several times faster); same nodes and marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _convert(loader: Any, node: yaml.Node) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = LineDict()
        out.line, out.lines = line, {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise YamlLineError(key_node.start_mark.line + 1, "a mapping key must be a plain value")
            if key in out:
                raise YamlLineError(key_node.start_mark.line + 1, f"duplicate key `{key}`")
            out[key] = _convert(loader, value_node)
            out.lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = LineList(_convert(loader, item) for item in node.value)
        seq.line, seq.lines = line, [item.start_mark.line + 1 for item in node.value]
        return seq
    return loader.construct_object(node, deep=True)


def load_with_lines(text: str) -> Any:
    """Parse one YAML document; raise YamlLineError(line, what) when it is not valid YAML."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        alias_line = first_alias_line(node)
        if alias_line is not None:
            raise YamlLineError(alias_line, ALIAS_REFUSED + ": write the values out")
        return None if node is None else _convert(loader, node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc).splitlines()[0]
        raise YamlLineError(line, f"not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlLineError(None, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
