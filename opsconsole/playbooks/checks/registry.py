"""The check registry: each built-in check declares its parameters (name, type,
default) so the loader can reject bad parameters with `file:line` before anything runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..results import CheckResult

if TYPE_CHECKING:
    from ..context import PlaybookContext

REQUIRED = object()

# type name -> (python check, description for error messages and docs)
PARAM_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str_list": (lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v), "a list of strings"),
    "gpu": (lambda v: v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0), '"all" or a GPU index'),
    "version": (lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool), 'a version such as "535.104" or "12.1"'),
}


@dataclass(frozen=True)
class Param:
    type: str
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[Any, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable, or None."""
        test, description = PARAM_TYPES[self.type]
        if not test(value):
            return f"must be {description}, got {value!r}"
        if self.choices and value not in self.choices:
            return "must be one of " + ", ".join(map(str, self.choices)) + f", got {value!r}"
        return None


CheckFunction = Callable[["PlaybookContext", dict[str, Any]], CheckResult]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    function: CheckFunction
    summary: str
    reads: str
    params: dict[str, Param] = field(default_factory=dict)
    # Params whose values are KB ids or categories (checked against the KB at load).
    kb_params: tuple[str, ...] = ()
    # Cross-parameter rule run at load time: returns a problem string or None.
    validate: Callable[[dict[str, Any]], str | None] | None = None
    # Reads the CUDA env probe (torch facts): a playbook without such checks does not wait for it.
    probe: bool = False

    def with_defaults(self, given: dict[str, Any]) -> dict[str, Any]:
        values = {name: p.default for name, p in self.params.items() if not p.required}
        values.update(given)
        return values


CHECKS: dict[str, CheckSpec] = {}


def check(name: str, summary: str, reads: str, /, kb_params: tuple[str, ...] = (),
          validate: Callable[[dict[str, Any]], str | None] | None = None, probe: bool = False, **params: Param) -> Callable[[CheckFunction], CheckFunction]:
    """Register a built-in check. `kb_params` names params whose values are KB ids (validated at load)."""

    def register(function: CheckFunction) -> CheckFunction:
        if name in CHECKS:
            raise ValueError(f"check {name} registered twice")
        CHECKS[name] = CheckSpec(name, function, summary, reads, dict(params), kb_params, validate, probe)
        return function

    return register


def get_check(name: str) -> CheckSpec | None:
    _load_builtin_checks()
    return CHECKS.get(name)


def all_checks() -> dict[str, CheckSpec]:
    _load_builtin_checks()
    return dict(sorted(CHECKS.items()))


def _load_builtin_checks() -> None:
    # Importing the modules registers their checks.
    from . import driver_torch, gpu_health, gpu_memory, models_logs, python_env, resources, smoke  # noqa: F401
