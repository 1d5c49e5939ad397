"""Model and log checks: Hugging Face cache, offline mode and token, a log matched against the KB."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..context import PlaybookContext
from ..results import FAIL, PASS, SKIP, WARN, CheckResult, gib
from .registry import Param, check
from .resources import hf_cache_dir

_TRUTHY = ("1", "true", "yes", "on")
# Repo ids named in typical transformers / huggingface_hub error messages.
_REPO_IN_LOG = (
    re.compile(r"huggingface\.co/(?:api/models/)?([A-Za-z0-9][\w.-]*/[\w.-]+?)(?:/resolve|/tree|/blob|[\s'\"]|$)"),
    re.compile(r"(?:repo(?:sitory)?(?:_id)?|model|for|load)\W{1,3}'([A-Za-z0-9][\w.-]*/[\w.-]+)'", re.I),
    re.compile(r"(?:repo(?:sitory)?(?:_id)?|model)\W{1,3}\"([A-Za-z0-9][\w.-]*/[\w.-]+)\"", re.I),
)


def is_offline(ctx: PlaybookContext) -> bool:
    return any((ctx.env_value(v)[0] or "").lower() in _TRUTHY for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def model_from_log(ctx: PlaybookContext) -> str | None:
    if ctx.log_file is None or not ctx.log_file.is_file():
        return None
    text = ctx.log_file.read_text(encoding="utf-8", errors="replace")[-200_000:]
    for pattern in _REPO_IN_LOG:
        found = pattern.search(text)
        if found:
            return found.group(1).rstrip(".")
    return None


def _cached_snapshot(cache: Path, repo: str) -> tuple[Path | None, list[str]]:
    """(snapshot dir with a config, names of interrupted downloads) for a repo in the hub cache."""
    for kind in ("models", "datasets"):
        folder = cache / f"{kind}--{repo.replace('/', '--')}"
        if not folder.is_dir():
            continue
        incomplete = [b.name for b in (folder / "blobs").glob("*.incomplete")] if (folder / "blobs").is_dir() else []
        for snap in sorted((folder / "snapshots").glob("*"), key=lambda s: s.stat().st_mtime, reverse=True):
            if any((snap / name).exists() for name in ("config.json", "model_index.json", "adapter_config.json")):
                return snap, incomplete
        return None, incomplete
    return None, []


def _weights(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for ext in ("*.safetensors", "*.bin", "*.gguf") for p in folder.rglob(ext))[:20]


@check("hf_model_cached",
       "A Hugging Face model (repo id or local dir) is complete on disk: config plus weights, no interrupted download.",
       "the hub cache (HF_HUB_CACHE / HF_HOME), or the local directory; the model id from --log when `model` is empty",
       model=Param("str", "", "repo id (org/name) or local path; empty: the model named in --log"))
def hf_model_cached(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    model = p["model"] or model_from_log(ctx)
    cache = hf_cache_dir(ctx)
    evidence: dict[str, Any] = {"model": model, "hf_cache": str(cache), "offline": is_offline(ctx)}
    if not model:
        return CheckResult(SKIP, "no model to look for (give `model:` or a log naming it with --log)", evidence)
    local = Path(model).expanduser()
    if local.is_dir():
        weights = _weights(local)
        configs = [n for n in ("config.json", "model_index.json", "adapter_config.json") if (local / n).exists()]
        evidence.update({"path": str(local), "configs": configs, "weights": weights})
        if configs and weights:
            return CheckResult(PASS, f"{local} has {', '.join(configs)} and {len(weights)} weight file(s)", evidence)
        missing = " and ".join(x for x, ok in (("a config", configs), ("weight files", weights)) if not ok)
        return CheckResult(FAIL, f"{local} lacks {missing}", evidence,
                           "Re-save it with `model.save_pretrained(DIR)` / `pipe.save_pretrained(DIR)` or copy the "
                           "missing files (config.json, *.safetensors) from the source.")
    snapshot, incomplete = _cached_snapshot(cache, model)
    evidence["incomplete_downloads"] = incomplete
    if snapshot is not None:
        weights = _weights(snapshot)
        size = sum((snapshot / w).stat().st_size for w in weights if (snapshot / w).exists())
        evidence.update({"snapshot": str(snapshot), "weights": weights, "weights_gib": gib(size)})
        if incomplete:
            return CheckResult(WARN, f"{model} is cached but {len(incomplete)} download(s) were interrupted", evidence,
                               f"Finish the download where there is network: `huggingface-cli download {model}`.")
        if not weights:
            return CheckResult(WARN, f"{model} is cached without weight files (config only)", evidence,
                               f"Download the weights: `huggingface-cli download {model}`.")
        return CheckResult(PASS, f"{model} is cached ({len(weights)} weight file(s), {gib(size):g} GiB)", evidence)
    remedy = (f"Download it on a machine with network (`huggingface-cli download {model}`) and copy {cache} here, "
              f"or pass a local directory. Check the id's spelling (case matters).")
    if evidence["offline"]:
        return CheckResult(FAIL, f"{model} is not in {cache} and offline mode is on", evidence, remedy)
    return CheckResult(WARN, f"{model} is not cached; it will be downloaded on first use", evidence, remedy)


@check("hf_offline", "Reports Hugging Face offline mode and endpoint; with `expect` warns when the mode differs.",
       "HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE, HF_ENDPOINT in the ML environment",
       expect=Param("str", "any", "any | online | offline", choices=("any", "online", "offline")))
def hf_offline(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    offline = is_offline(ctx)
    evidence = {name: ctx.env_value(name)[0] for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")}
    evidence["offline"] = offline
    mode = "offline" if offline else "online"
    if p["expect"] in ("any", mode):
        return CheckResult(PASS, f"Hugging Face hub mode: {mode}", evidence)
    if offline:
        return CheckResult(WARN, "offline mode is on: only cached models load", evidence,
                           "If this machine has network, `unset HF_HUB_OFFLINE TRANSFORMERS_OFFLINE`; otherwise "
                           "download the model elsewhere and copy the cache (or a save_pretrained directory) here.")
    return CheckResult(WARN, "offline mode is off: loading may try the network", evidence,
                       "On a machine without network set `HF_HUB_OFFLINE=1` so loading fails fast from the cache.")


@check("hf_token", "A Hugging Face token is configured (needed for gated models such as Gemma or Llama).",
       "HF_TOKEN / HUGGING_FACE_HUB_TOKEN (presence only, never the value), the token file in HF_HOME",
       required=Param("bool", False, "fail (instead of warn) when there is none"))
def hf_token(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    from_env = [v for v in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if ctx.env_value(v)[0]]
    home, _ = ctx.env_value("HF_HOME")
    token_file = Path(home).expanduser() / "token" if home else Path.home() / ".cache" / "huggingface" / "token"
    evidence = {"token_env": from_env, "token_file": str(token_file), "token_file_exists": token_file.is_file()}
    if from_env or token_file.is_file():
        return CheckResult(PASS, "a Hugging Face token is configured", evidence)
    return CheckResult(FAIL if p["required"] else WARN, "no Hugging Face token", evidence,
                       "Gated models need a token with access: accept the licence on the model's page, then "
                       "`huggingface-cli login` (or export HF_TOKEN).")


def _kb_matches(ctx: PlaybookContext) -> tuple[Any, str | None]:
    """(MatchResult, None) or (None, reason to skip)."""
    if ctx.log_file is None:
        return None, "no log given (pass --log FILE)"
    if not ctx.log_file.is_file():
        return None, f"log file {ctx.log_file} not found"
    try:
        from ...kb import match_log  # type: ignore[attr-defined]
    except ImportError:
        return None, "the knowledge base is not available in this build"
    return match_log(ctx.log_file, kb=ctx.kb, top=5), None


@check("log_matches_kb",
       "The --log file matches one of the KB entries `ids` (ids or categories; empty: any entry): fail shows the "
       "proving lines; a match to another entry warns and names it.",
       "the log file given with --log, matched with the KB",
       kb_params=("ids",),
       ids=Param("str_list", [], "KB entry ids or categories this playbook is about"))
def log_matches_kb(ctx: PlaybookContext, p: dict[str, Any]) -> CheckResult:
    result, reason = _kb_matches(ctx)
    if result is None:
        return CheckResult(SKIP, reason or "", {"log": str(ctx.log_file) if ctx.log_file else None})
    wanted = set(p["ids"])
    matches = list(result.matches)
    evidence: dict[str, Any] = {"log": str(ctx.log_file), "lines_scanned": result.lines_scanned,
                                "matches": [{"id": m.id, "category": m.category, "score": round(m.score, 2)} for m in matches]}
    ours = [m for m in matches if not wanted or m.id in wanted or m.category in wanted]
    if ours:
        top = ours[0]
        lines = [f"line {e.line}: {e.text.strip()[:300]}" for e in top.evidence[:3]]
        evidence["evidence"] = lines
        return CheckResult(FAIL, f"the log shows {top.title} ({top.id})" + (f" — {lines[0][:160]}" if lines else ""), evidence,
                           f"See `opsconsole kb show {top.id}` for the cause and fix.")
    if matches:
        top = matches[0]
        hint = f"; run `opsconsole playbook run {top.playbook}`" if top.playbook else ""
        return CheckResult(WARN, f"the log points to a different problem: {top.title} ({top.id})", evidence,
                           f"This playbook may not fit: see `opsconsole kb show {top.id}`{hint}.")
    return CheckResult(PASS, f"no known failure signature in {result.lines_scanned} line(s)", evidence)
