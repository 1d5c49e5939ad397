"""`--model` resolution offline and `opsconsole models`: HF cache (HF_HOME / HF_HUB_CACHE) and model_dirs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from opsconsole.cli import main
from opsconsole.jobs.common import JobError
from opsconsole.jobs.model_source import hub_cache_dir, resolve_model


def _cache_repo(hub: Path, repo_id: str, files: dict[str, str], commit: str = "0123456789abcdef") -> Path:
    """Lay out a model the way huggingface_hub caches it: blobs + snapshot symlinks + refs/main."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, text in files.items():
        blob = repo / "blobs" / f"blob{abs(hash(name))}"
        blob.write_text(text)
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
    return snapshot


def test_hf_home_and_hub_cache_are_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub_cache_dir() == tmp_path / "elsewhere"


def test_resolve_tiny_local_cached_and_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    snapshot = _cache_repo(hub, "google/gemma-2-2b-it", {"config.json": '{"model_type": "gemma2"}'})
    assert resolve_model("tiny").source == "tiny"
    cached = resolve_model("google/gemma-2-2b-it")
    assert (cached.source, cached.path) == ("hf-cache", snapshot)
    local = tmp_path / "mine"
    local.mkdir()
    (local / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    assert resolve_model(str(local)).path == local
    with pytest.raises(JobError, match="not in the local Hugging Face cache") as missing:
        resolve_model("google/gemma-2-9b")
    assert missing.value.exit_code == 3 and missing.value.kb == "model-offline-not-cached"
    with pytest.raises(JobError, match="no config.json"):
        resolve_model(str(tmp_path))  # a directory that is not a model
    assert resolve_model("gemma-2-9b", weights="random").source == "random"  # built from a shipped config


def test_models_lists_cache_and_model_dirs_with_kinds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    hub = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    _cache_repo(hub, "google/gemma-2-2b-it", {"config.json": '{"model_type": "gemma2"}',
                                               "model.safetensors": "x" * 1000})
    _cache_repo(hub, "stable-diffusion-v1-5/stable-diffusion-v1-5",
                {"model_index.json": '{"_class_name": "StableDiffusionPipeline"}', "unet/config.json": "{}"})
    models_dir = tmp_path / "models"
    (models_dir / "my-sdxl").mkdir(parents=True)
    (models_dir / "my-sdxl" / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    monkeypatch.setenv("OPSCONSOLE_MODEL_DIRS", str(models_dir))

    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    gemma = listed["google/gemma-2-2b-it"]
    assert gemma["architecture"] == "gemma2" and "gemma-infer" in gemma["kinds"] and gemma["size_bytes"] >= 1000
    assert "sd-infer" in listed["stable-diffusion-v1-5/stable-diffusion-v1-5"]["kinds"]
    assert listed["my-sdxl"]["source"] == "model-dir" and listed["my-sdxl"]["architecture"] == "StableDiffusionXLPipeline"
    assert "tiny" in listed

    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "google/gemma-2-2b-it" in table and "gemma2" in table and "my-sdxl" in table


def test_cached_model_id_passes_run_validation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from opsconsole.runs import RunManager

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    _cache_repo(tmp_path / "hub", "google/gemma-2-2b-it", {"config.json": '{"model_type": "gemma2"}'})
    manager = RunManager()
    record = manager.launch("selftest", ["--model", "google/gemma-2-2b-it", "--lines", "1"])
    assert manager.wait(record.id, timeout=30)["status"] == "ok"
