"""Python environment checks: a module importable in the probe interpreter; env vars."""

from __future__ import annotations

from typing import Any

from ...redact import REDACTED, is_secret_name
from ..context import PlaybookContext
from ..results import FAIL, PASS, WARN, CheckResult
from .common import version_at_least
from .env_validators import COMMA_LIST_VARS, VALIDATORS
from .registry import Param, check


@check("module_importable",
       "`module` imports in the probe interpreter (--python), with a version in [min_version, max_version).",
       "a subprocess of the probe interpreter (never imported into the console); the env probe's library list",
       module=Param("str", help="import name, e.g. flash_attn"),
       min_version=Param("version", "", "lowest acceptable version (inclusive)"),
       max_version=Param("version", "", "first unacceptable version (exclusive)"),
       required=Param("bool", True, "fail (true) or warn (false) when missing"),
       install=Param("str", "", "install hint shown in the remedy, e.g. 'pip install flash-attn'"))
def module_importable(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    info = ctx.module_info(p["module"])
    evidence = {"module": info.module, "importable": info.importable, "version": info.version,
                "error": info.error, "python": ctx.settings.python, "source": info.source}
    bad = FAIL if p["required"] else WARN
    install = p["install"] or f"pip install {p['module'].replace('_', '-')}"
    if not info.importable:
        return CheckResult(bad, f"`import {info.module}` fails" + (f": {info.error}" if info.error else ""), evidence,
                           f"Install it into {ctx.settings.python}: `{ctx.settings.python} -m {install}`"
                           if install.startswith("pip ") else install)
    low, high = str(p["min_version"]), str(p["max_version"])
    if info.version and low and not version_at_least(info.version, low):
        return CheckResult(bad, f"{info.module} {info.version} is older than {low}", evidence,
                           f"Upgrade: `{ctx.settings.python} -m pip install '{p['module'].replace('_', '-')}>={low}'`")
    if info.version and high and version_at_least(info.version, high):
        return CheckResult(bad, f"{info.module} {info.version} is not below {high}", evidence,
                           f"Pin it: `{ctx.settings.python} -m pip install '{p['module'].replace('_', '-')}<{high}'`")
    return CheckResult(PASS, f"{info.module} {info.version or '(no version)'} imports", evidence)


def _env_var_params(p: dict[str, Any]) -> str | None:
    if p.get("expect", "report") == "valid" and p.get("name") not in VALIDATORS:
        return (f"`expect: valid` has no validator for {p.get('name')}; use set / unset / report, "
                f"or one of {', '.join(VALIDATORS)}")
    if p.get("value") and p.get("expect", "report") != "set":
        return "`value` only makes sense with `expect: set`"
    return None


@check("env_var", "An environment variable is set / unset / syntactically valid, or just reported; "
       "`recommend` warns when the value lacks a recommended setting.",
       "the ML interpreter's environment (as reported by the env probe), else the console's",
       validate=_env_var_params,
       name=Param("str", help="variable name"),
       expect=Param("str", "report", "set | unset | valid | report", choices=("set", "unset", "valid", "report")),
       value=Param("str", "", "with expect=set: the exact value needed"),
       recommend=Param("str", "", "a setting the value should contain, e.g. expandable_segments:True"),
       severity=Param("str", "warn", "status when the expectation is not met", choices=("warn", "fail")),
       why=Param("str", "", "sentence added to the remedy"))
def env_var(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    name = p["name"]
    value, source = ctx.env_value(name)
    shown = REDACTED if value and is_secret_name(name) else value
    evidence = {"name": name, "value": shown, "set": value is not None, "read_from": source}
    bad = p["severity"]
    why = f" {p['why']}" if p["why"] else ""
    if p["expect"] == "set":
        if value is None:
            return CheckResult(bad, f"{name} is not set", evidence,
                               f"`export {name}={p['value'] or '<value>'}`." + why)
        if p["value"] and value != p["value"]:
            return CheckResult(bad, f"{name}={shown}, expected {p['value']}", evidence, f"`export {name}={p['value']}`." + why)
    elif p["expect"] == "unset" and value is not None:
        return CheckResult(bad, f"{name}={shown} is set", evidence, f"`unset {name}`." + why)
    elif p["expect"] == "valid" and value is not None:
        problem = VALIDATORS[name](value, ctx)
        if problem:
            return CheckResult(FAIL, f"{name}={shown}: {problem}", evidence, f"Fix or unset {name}.{why}")
    if p["recommend"] and (value is None or p["recommend"] not in value):
        suggested = f"{value},{p['recommend']}" if value and name in COMMA_LIST_VARS else p["recommend"]
        return CheckResult(WARN, f"{name} does not contain {p['recommend']}", evidence, f"`export {name}={suggested}`." + why)
    return CheckResult(PASS, f"{name}={shown}" if value is not None else f"{name} is not set", evidence)
