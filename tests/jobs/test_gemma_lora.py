"""gemma-lora on the tiny Gemma 2: trains, the loss goes down, the adapter saves and reloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from job_runner import run_job

from opsconsole.jobs import gemma_lora
from opsconsole.jobs.common import JobError

pytestmark = pytest.mark.ml


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gemma-cache")


def test_lora_trains_saves_and_reloads_the_adapter(tmp_path: Path, cache: Path) -> None:
    pytest.importorskip("torch")
    run = run_job("gemma-lora", ["--model", "tiny", "--device", "cpu", "--steps", "15"], tmp_path / "run", cache)
    assert run.returncode == 0, run.log
    assert run.finish["status"] == "ok"
    m = run.metrics
    assert m["steps"] == 15 and m["loss_trend"] == "decreasing"
    assert m["loss_last_window_mean"] < m["loss_first_window_mean"]
    assert m["steps_per_s"] > 0 and m["peak_vram_bytes"] == 0 and m["final_loss"] == m["loss_last_window_mean"]

    progress = run.of_type("progress")
    assert [p["step"] for p in progress] == list(range(1, 16))
    for event in progress:
        assert {"loss", "lr", "grad_norm", "tokens_per_s", "peak_vram_bytes"} <= set(event["metrics"])
    assert progress[0]["metrics"]["loss"] == m["loss_first"] and progress[-1]["metrics"]["loss"] == m["loss_last"]

    [artifact] = run.of_type("artifact")
    adapter = Path(artifact["path"])
    assert artifact["kind"] == "adapter" and (adapter / "adapter_model.safetensors").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"] and config["r"] == 8
    # the adapter loaded onto a fresh base reproduces the trained model, then generates
    assert m["adapter_reload_max_abs_diff"] < 1e-4
    assert "generation with the reloaded adapter" in run.log and "Traceback" not in run.log


def test_grad_checkpointing_and_bigger_rank_still_train(tmp_path: Path, cache: Path) -> None:
    pytest.importorskip("torch")
    run = run_job("gemma-lora", ["--device", "cpu", "--steps", "3", "--grad-checkpointing", "--rank", "4",
                                 "--batch", "2", "--seq-len", "48"], tmp_path / "run", cache)
    assert run.returncode == 0, run.log
    assert run.metrics["steps"] == 3 and run.metrics["lora_rank"] == 4


def test_random_weight_base_is_rebuilt_identically_for_the_reload(tmp_path: Path, cache: Path) -> None:
    """--weights random: the fresh base of the round trip must be the trained one (seeded init)."""
    pytest.importorskip("torch")
    config = json.loads((Path(gemma_lora.__file__).parent / "configs" / "gemma-2-2b.json").read_text())
    config.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, vocab_size=2048)
    path = tmp_path / "small-gemma2.json"
    path.write_text(json.dumps(config))
    run = run_job("gemma-lora", ["--model", str(path), "--weights", "random", "--device", "cpu", "--steps", "3",
                                 "--lr", "1e-2"], tmp_path / "run", cache)
    assert run.returncode == 0, run.log
    assert run.metrics["adapter_reload_max_abs_diff"] < 1e-4


@pytest.mark.parametrize("argv, flag", [
    (["--steps", "0"], "--steps"), (["--rank", "0"], "--rank"), (["--seq-len", "4"], "--seq-len"),
    (["--lr", "-1"], "--lr"), (["--inject-nan-at", "0"], "--inject-nan-at"),
    (["--seq-len", "100000000"], "--seq-len 100000000: must be 1 to 512 (the model's max_position_embeddings"),
    (["--batch", "100000"], "--batch 100000: must be 1 to 1,024"), (["--steps", "1000000000"], "--steps 1000000000: must be 1 to 100,000"),
    (["--rank", "100000"], "--rank 100000: must be 1 to 256"), (["--lr", "nan"], "--lr nan"),
])
def test_bad_trainer_flags_are_refused(argv: list[str], flag: str) -> None:
    with pytest.raises(JobError) as info:
        gemma_lora.validate(gemma_lora.build_parser().parse_args(argv))
    assert info.value.exit_code == 3 and flag in str(info.value)
