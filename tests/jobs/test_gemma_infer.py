"""gemma-infer on the tiny Gemma 2, run for real in a child process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from job_runner import run_job

from opsconsole.jobs import gemma_infer
from opsconsole.jobs.common import JobError

pytestmark = pytest.mark.ml


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gemma-cache")


def test_multi_turn_chat_reports_metrics(tmp_path: Path, cache: Path) -> None:
    pytest.importorskip("torch")
    run = run_job("gemma-infer", ["--model", "tiny", "--device", "cpu", "--turns", "3", "--max-new-tokens", "6"],
                  tmp_path / "run", cache)
    assert run.returncode == 0, run.log
    assert run.finish["status"] == "ok"
    m = run.metrics
    assert m["ttft_s"] > 0 and m["decode_tokens_per_s"] > 0 and m["total_s"] >= m["ttft_s"]
    assert m["attn"] == "eager" and m["dtype"] == "fp32" and m["turns"] == 3
    assert m["peak_vram_bytes"] == 0  # CPU: no VRAM
    assert "peak VRAM n/a (cpu)" in run.log and "peak VRAM 0.0" not in run.log  # said as n/a, not "0 MiB"
    turns = [e for e in run.of_type("progress") if e["unit"] == "turn"]
    assert [t["step"] for t in turns] == [1, 2, 3]
    prompts = [t["metrics"]["prompt_tokens"] for t in turns]
    news = [t["metrics"]["new_tokens"] for t in turns]
    assert news == [6, 6, 6]  # min_new_tokens forces the decode length
    # each turn re-feeds the history: the previous prompt, the answer and the new question
    assert prompts[1] > prompts[0] + news[0] and prompts[2] > prompts[1] + news[1]
    assert {e["name"] for e in run.of_type("metric")} >= {"ttft_s", "decode_tokens_per_s", "peak_vram_bytes"}
    assert "turn 3/3" in run.log and "model:" in run.log and "Traceback" not in run.log


def test_random_weights_with_a_larger_vocab_than_the_tokenizer(tmp_path: Path, cache: Path) -> None:
    """--weights random from a config file: the model has 4096 ids, the tiny tokenizer 1024."""
    pytest.importorskip("torch")
    config = json.loads((Path(gemma_infer.__file__).parent / "configs" / "gemma-2-2b.json").read_text())
    config.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, vocab_size=4096)
    path = tmp_path / "small-gemma2.json"
    path.write_text(json.dumps(config))
    run = run_job("gemma-infer", ["--model", str(path), "--weights", "random", "--device", "cpu",
                                  "--max-new-tokens", "5"], tmp_path / "run", cache)
    assert run.returncode == 0, run.log
    assert run.metrics["weights"] == "random" and run.metrics["params"] > 4096 * 32


def test_nan_logits_fail_the_run_with_a_finding(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))  # the tiny model of the shared cache
    from opsconsole.jobs.tiny_gemma import ensure_tiny_gemma

    tiny = ensure_tiny_gemma()
    model = AutoModelForCausalLM.from_pretrained(tiny)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    broken = tmp_path / "broken-gemma"
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(broken)
    run = run_job("gemma-infer", ["--model", str(broken), "--device", "cpu", "--max-new-tokens", "3"],
                  tmp_path / "run", cache)
    assert run.returncode == 1
    assert run.finish["status"] == "failed" and "NaN" in run.finish["error"]
    assert any(f["severity"] == "error" and "NaN" in f["message"] for f in run.of_type("finding"))
    assert "Traceback" not in run.log


@pytest.mark.parametrize("argv, flag", [
    (["--turns", "0"], "--turns"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    # bounded by the model (tiny: 512 positions), not only from below: 1e8 was accepted
    (["--max-new-tokens", "100000000"], "must be 1 to 512 (the model's max_position_embeddings is 512)"),
    (["--max-new-tokens", "200", "--turns", "3"], "--max-new-tokens x --turns 600: must be 1 to 512"),
    (["--model", "gemma-2-2b", "--weights", "random", "--max-new-tokens", "9000"], "max_position_embeddings is 8192"),
    (["--turns", "1000"], "--turns 1000: must be 1 to 100"),
    (["--model", "/no/such/model"], "/no/such/model"),
    (["--model", "someorg/not-cached"], "not in the local Hugging Face cache"),
])
def test_bad_flags_are_refused_cheaply(argv: list[str], flag: str) -> None:
    args = gemma_infer.build_parser().parse_args(argv)
    with pytest.raises(JobError) as info:
        gemma_infer.validate(args)
    assert info.value.exit_code == 3 and flag in str(info.value)


def test_missing_backends_are_bad_input_in_the_child(tmp_path: Path, cache: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    run = run_job("gemma-infer", ["--attn", "flash_attention_2", "--device", "cpu"], tmp_path / "run", cache)
    assert run.returncode == 3
    assert "flash-attn package is not installed" in run.log and "Traceback" not in run.log
    assert run.finish["status"] == "failed"


def test_sdpa_on_gemma_2_is_a_one_line_error(tmp_path: Path, cache: Path) -> None:
    """transformers 5 gives Gemma 2 no SDPA path (SDPA cannot soft-cap): say so and what to use."""
    pytest.importorskip("torch")
    run = run_job("gemma-infer", ["--attn", "sdpa", "--device", "cpu"], tmp_path / "run", cache)
    if run.returncode == 0:
        pytest.skip("this transformers runs Gemma 2 with SDPA")
    assert run.returncode == 3 and "Traceback" not in run.log
    assert "--attn sdpa" in run.finish["error"] and "flex_attention" in run.finish["error"]


def test_quantization_without_bitsandbytes_is_a_clear_error() -> None:
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    args = gemma_infer.build_parser().parse_args(["--quant", "int4"])
    with pytest.raises(JobError) as info:
        gemma_infer.validate(args)
    assert info.value.exit_code == 3 and "bitsandbytes" in str(info.value)


def test_hugging_face_cache_id_loads_offline(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `org/name` id found in the local hub cache loads with local_files_only (HF_HUB_OFFLINE=1 here)."""
    pytest.importorskip("torch")
    import os
    import shutil

    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    from opsconsole.jobs.tiny_gemma import ensure_tiny_gemma

    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--acme--gemma-mini"
    shutil.copytree(ensure_tiny_gemma(), repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    run = run_job("gemma-infer", ["--model", "acme/gemma-mini", "--device", "cpu", "--max-new-tokens", "4"],
                  tmp_path / "run", cache)
    assert run.returncode == 0, run.log
    assert run.metrics["model"] == "acme/gemma-mini" and run.metrics["turns"] == 1
