"""Where a `--model` comes from, decided offline and without torch.

    tiny                     a small random-weight model built by the job itself
    /a/local/path, ./x, ~/x  a directory with config.json / model_index.json (or a single weights file)
    org/name                 a Hugging Face id, found in the local hub cache
                             ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)

Used by the run manager (validate before launching: exit 3 with one line), by
the jobs' validate(), and by `opsconsole models`. Stdlib only: it runs in the
console process as well as in the job.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import JobError

TINY = "tiny"
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth", ".gguf")

# architecture (config.json model_type / model_index.json _class_name) -> kinds that can run it
_KINDS_BY_ARCH: dict[str, tuple[str, ...]] = {
    "gemma": ("gemma-infer", "gemma-lora"),
    "gemma2": ("gemma-infer", "gemma-lora"),
    "gemma3": ("gemma-infer", "gemma-lora"),
    "gemma3_text": ("gemma-infer", "gemma-lora"),
    "StableDiffusionPipeline": ("sd-infer", "sd-lora", "sd-dreambooth"),
    "StableDiffusionImg2ImgPipeline": ("sd-infer", "sd-lora", "sd-dreambooth"),
    "StableDiffusionInpaintPipeline": ("sd-infer",),
    "StableDiffusionXLPipeline": ("sd-infer", "sd-lora", "sd-dreambooth"),
    "StableDiffusionXLImg2ImgPipeline": ("sd-infer",),
    "StableDiffusionXLInpaintPipeline": ("sd-infer",),
}


@dataclass(frozen=True)
class ModelRef:
    """A resolved `--model`: source is "tiny", "local", "hf-cache" or "random"."""

    spec: str
    source: str
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None

    @property
    def load_from(self) -> str:
        """What to hand to from_pretrained (a path whenever there is one)."""
        return str(self.path) if self.path is not None else self.spec


@dataclass
class CachedModel:
    """One model `opsconsole models` lists."""

    name: str
    path: Path
    source: str  # "hf-cache" | "model-dir"
    size_bytes: int
    architecture: str | None
    kinds: tuple[str, ...]
    revisions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "source": self.source, "size_bytes": self.size_bytes,
                "architecture": self.architecture, "kinds": list(self.kinds), "revisions": self.revisions}


def hub_cache_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = Path(env["HF_HOME"]).expanduser() if env.get("HF_HOME") else Path.home() / ".cache" / "huggingface"
    return home / "hub"


def is_offline(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


# Hugging Face repo ids: [org/]name, each part up to 96 of [A-Za-z0-9_.-] (huggingface_hub validate_repo_id)
HF_REPO_ID = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")

def looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith(WEIGHT_SUFFIXES) or os.path.exists(spec)


def cached_snapshot(repo_id: str, cache: Path | None = None, revision: str = "main") -> Path | None:
    """The snapshot dir of `repo_id` in the hub cache (refs/<revision>, else the newest snapshot)."""
    repo_dir = (cache or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo_dir / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
        if (snapshots / commit).is_dir():
            return snapshots / commit
    candidates = [p for p in snapshots.iterdir() if p.is_dir() and any(p.iterdir())]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def resolve_model(spec: str, weights: str = "pretrained") -> ModelRef:
    """Resolve `--model` offline. Raises JobError(exit_code=3) naming what to do."""
    spec = (spec or "").strip()
    if not spec:
        raise JobError("--model is empty: use tiny, a local path or a Hugging Face id in the local cache", exit_code=3)
    if spec == TINY:
        return ModelRef(spec, "tiny")
    if weights == "random":  # the architecture comes from a shipped config; the job checks the name
        return ModelRef(spec, "random")
    if looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise JobError(f"--model {spec}: no such file or directory", exit_code=3, kb="model-load-failure")
        if path.is_dir() and not any((path / n).exists() for n in ("config.json", "model_index.json")):
            raise JobError(f"--model {spec}: the directory has no config.json or model_index.json "
                           "(not a transformers/diffusers model directory)", exit_code=3, kb="model-load-failure")
        return ModelRef(spec, "local", path=path.resolve())
    if not HF_REPO_ID.fullmatch(spec):  # before any file system lookup: a 10,000-character name
        shown = spec if len(spec) <= 120 else spec[:120] + "…"  # is an error, not an ENAMETOOLONG
        raise JobError(f"--model {shown}: neither a local path nor a Hugging Face id (org/name, letters, digits, "
                       "'-', '_', '.', at most 96 characters each)", exit_code=3, kb="model-load-failure")
    cache = hub_cache_dir()
    snapshot = cached_snapshot(spec, cache)
    if snapshot is not None:
        return ModelRef(spec, "hf-cache", path=snapshot, repo_id=spec, revision=snapshot.name)
    raise JobError(f"--model {spec}: not in the local Hugging Face cache ({cache}) and smoke runs load models "
                   f"offline; download it first (`huggingface-cli download {spec}`), or pass a local path or "
                   "`--model tiny`", exit_code=3, kb="model-offline-not-cached")


# --- listing (`opsconsole models`) --------------------------------------------------------

def read_architecture(path: Path) -> str | None:
    """config.json model_type (transformers) or model_index.json _class_name (diffusers)."""
    for name, key in (("model_index.json", "_class_name"), ("config.json", "model_type")):
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get(key):
            return str(data[key])
    return None


def kinds_for(architecture: str | None) -> tuple[str, ...]:
    return _KINDS_BY_ARCH.get(architecture or "", ())


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size  # follows hub symlinks to blobs
            except OSError:
                pass
    return total


def scan_hub_cache(cache: Path | None = None) -> list[CachedModel]:
    """Models in the hub cache: huggingface_hub.scan_cache_dir when importable, else the directory layout."""
    cache = cache or hub_cache_dir()
    if not cache.is_dir():
        return []
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        scan_cache_dir = None
    models: list[CachedModel] = []
    if scan_cache_dir is not None:
        try:
            info = scan_cache_dir(cache)
            for repo in info.repos:
                if repo.repo_type != "model":
                    continue
                snapshot = cached_snapshot(repo.repo_id, cache)
                arch = read_architecture(snapshot) if snapshot else None
                models.append(CachedModel(repo.repo_id, snapshot or Path(repo.repo_path), "hf-cache",
                                          int(repo.size_on_disk), arch, kinds_for(arch),
                                          sorted(r.commit_hash[:12] for r in repo.revisions)))
            return sorted(models, key=lambda m: m.name)
        except Exception:  # a damaged cache: fall back to reading the layout
            models = []
    for repo_dir in sorted(cache.glob("models--*")):
        repo_id = repo_dir.name[len("models--"):].replace("--", "/")
        snapshot = cached_snapshot(repo_id, cache)
        if snapshot is None:
            continue
        arch = read_architecture(snapshot)
        revisions = sorted(p.name[:12] for p in (repo_dir / "snapshots").iterdir() if p.is_dir())
        models.append(CachedModel(repo_id, snapshot, "hf-cache", _dir_size(repo_dir / "blobs") or _dir_size(snapshot),
                                  arch, kinds_for(arch), revisions))
    return models


def scan_model_dirs(dirs: tuple[str, ...] | list[str]) -> list[CachedModel]:
    """Model directories under each configured model dir (the dir itself, or its children)."""
    models: list[CachedModel] = []
    for base in dirs:
        root = Path(base).expanduser()
        if not root.is_dir():
            continue
        candidates = [root] if read_architecture(root) else sorted(p for p in root.iterdir() if p.is_dir())
        for path in candidates:
            arch = read_architecture(path)
            if arch is None:
                continue
            models.append(CachedModel(path.name, path, "model-dir", _dir_size(path), arch, kinds_for(arch)))
    return models
