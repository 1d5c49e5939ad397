"""gemma-infer: chat generation with Gemma 2, measured (TTFT, decode tokens/s, peak VRAM).

Each turn: the conversation so far is rendered with the chat template and one generate,
forced to exactly --max-new-tokens (min_new_tokens), is timed; a logits processor stamps
the first decoding step, which gives the TTFT (prefill) of that same call, and
decode tokens/s = (N - 1) / (total - TTFT).
The answer is appended to the history and the next turn re-feeds it all.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .common import (JobContext, JobError, Timer, add_common_job_options, check_range, dtype_name, peak_memory,
                     reset_peak_memory, resolve_dtype, resolve_device, seed_everything, synchronize, vram_text)
from .gemma_model import (ATTN_CHOICES, QUANT_CHOICES, check_tokens, load_model, load_tokenizer, resolve_source,
                          validate_backends)
from .graph_replay import ReplayWatch, cudagraph_skips, replay_verdict

DEFAULT_PROMPTS = (
    "What does nvidia-smi show?",
    "Why does my loss become NaN?",
    "How do I make training use less memory?",
    "What is an all-reduce?",
)
# --compile: untimed generates of the timed input before timing. CUDA-graph trees run a new
# shape eagerly once, record it the second time and replay from the third (graph_replay.py).
COMPILE_WARMUPS = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemma-infer", description=__doc__.splitlines()[0])
    add_common_job_options(parser)
    parser.add_argument("--prompt", action="append", default=None,
                        help="user message (repeat for several turns; default: built-in questions)")
    parser.add_argument("--turns", type=int, default=1, help="conversation turns, the history re-fed each turn")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated per turn (forced)")
    parser.add_argument("--attn", default="eager", choices=ATTN_CHOICES,
                        help="attention backend (eager keeps Gemma 2's logit soft-capping exact)")
    parser.add_argument("--quant", default="none", choices=QUANT_CHOICES, help="bitsandbytes weight quantization")
    parser.add_argument("--compile", action="store_true", help="static KV cache + torch.compile of the forward")
    parser.add_argument("--sample", action="store_true", help="sample (temperature 0.7, top-p 0.95) instead of greedy")
    return parser


def validate(args: argparse.Namespace) -> None:
    """Cheap flag checks (no torch): JobError exit 3."""
    check_range("--turns", args.turns, 1, 100)
    source = resolve_source(args.model)
    # every turn's answer stays in the history the next turn re-feeds: all of them must fit
    flag = "--max-new-tokens" if args.turns == 1 else "--max-new-tokens x --turns"
    check_tokens(flag, args.max_new_tokens * args.turns, source)
    validate_backends(args.attn, args.quant)


class _FiniteWatch:
    """Logits processor that flags NaN / +inf logits without a host sync per step.

    -inf is legitimate (min_new_tokens masks EOS that way); NaN or +inf is not.
    """

    def __init__(self) -> None:
        self.bad: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        flag = torch.isnan(scores).any() | torch.isposinf(scores).any()
        self.bad = flag if self.bad is None else (self.bad | flag)
        return scores

    def found(self) -> bool:
        return bool(self.bad) if self.bad is not None else False


class _FirstTokenClock:
    """Logits processor that timestamps the first decoding step of a generate() call.

    It is first called right after the prefill forward pass, so (first call - start)
    is the time to first token of the SAME call whose total time we measure: TTFT and
    decode speed come from one generation, not from two calls with their own noise.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.first: float | None = None

    def reset(self) -> None:
        self.first = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.first is None:
            synchronize(self.device)
            self.first = time.perf_counter()
        return scores


class _KeepInVocab:
    """Keeps generated ids inside the tokenizer (random full-size models have a larger vocab)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores[:, self.size:] = float("-inf")
        return scores


def main(args: argparse.Namespace, ctx: JobContext) -> dict[str, Any]:
    import torch
    from transformers import LogitsProcessorList

    validate(args)
    seed_everything(args.seed)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    source = resolve_source(args.model)
    tokenizer = load_tokenizer(source, args.weights)
    model = load_model(source, weights=args.weights, device=device, dtype=dtype, attn=args.attn, quant=args.quant)
    attn_used = model.config._attn_implementation
    n_params = sum(p.numel() for p in model.parameters())
    ctx.log(f"model {source.label} ({args.weights} weights, {n_params / 1e6:.1f}M params) on {device}, "
            f"dtype {dtype_name(dtype)}, attention {attn_used}, quant {args.quant}, compile {args.compile}")

    watch = _FiniteWatch()
    clock = _FirstTokenClock(device)
    processors = [watch, clock]
    if model.config.vocab_size > len(tokenizer):
        processors.append(_KeepInVocab(len(tokenizer)))
    gen_kwargs: dict[str, Any] = {
        "do_sample": args.sample, "pad_token_id": tokenizer.pad_token_id,
        "logits_processor": LogitsProcessorList(processors),
    }
    if args.sample:
        gen_kwargs.update(temperature=0.7, top_p=0.95)
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    if args.compile:
        from transformers import CompileConfig

        compile_config = CompileConfig()
        if not device.startswith("cuda"):
            compile_config._compile_all_devices = True
        gen_kwargs.update(cache_implementation="static", compile_config=compile_config)

    def generate(input_ids: Any, new_tokens: int) -> Any:
        with torch.inference_mode():
            return model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                  max_new_tokens=new_tokens, min_new_tokens=new_tokens, **gen_kwargs)

    prompts = list(args.prompt or DEFAULT_PROMPTS)
    history: list[dict[str, str]] = []

    def encode(messages: list[dict[str, str]]) -> Any:
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                                return_tensors="pt")
        return encoded["input_ids"].to(device)

    # Warm-up (kernels, allocator, compile) on the first prompt, with the same generation length;
    # compiled: enough warm-ups that the timed generate replays CUDA graphs instead of recording them.
    first_ids = encode([{"role": "user", "content": prompts[0]}])
    replay_watch = ReplayWatch().install() if args.compile else None
    with Timer(device) as warm:
        for _ in range(COMPILE_WARMUPS if args.compile else 1):
            generate(first_ids, args.max_new_tokens)
    ctx.log(f"warm-up: {warm.seconds:.3f}s" + (f" ({COMPILE_WARMUPS} generates)" if args.compile else ""))
    reset_peak_memory(device)

    turns: list[dict[str, Any]] = []
    replay_runs: list[dict[str, Any]] = []
    text = ""
    for turn in range(1, args.turns + 1):
        if ctx.stop_requested:
            break
        history.append({"role": "user", "content": prompts[(turn - 1) % len(prompts)]})
        input_ids = encode(history)
        if args.compile and turn > 1:  # a new prompt length recompiles: keep that out of the timings
            with Timer(device) as rewarm:
                for _ in range(COMPILE_WARMUPS):
                    generate(input_ids, args.max_new_tokens)
            ctx.log(f"turn {turn} warm-up (recompile for {input_ids.shape[1]} prompt tokens): {rewarm.seconds:.3f}s")
        output, total, ttft_s, graphs = _timed(generate, clock, replay_watch, device, input_ids, args.max_new_tokens)
        new_ids = output[0, input_ids.shape[1]:]
        if replay_watch is not None and turn == 1:  # the same input once more: does the compiled decode replay?
            _, total2, ttft2, graphs2 = _timed(generate, clock, replay_watch, device, input_ids, args.max_new_tokens)
            replay_runs = [_replay_run(total.seconds, ttft_s, new_ids.numel(), graphs),
                           _replay_run(total2.seconds, ttft2, new_ids.numel(), graphs2)]
        text = tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        decode_s = max(total.seconds - ttft_s, 1e-9)
        stats = {
            "turn": turn, "prompt_tokens": int(input_ids.shape[1]), "new_tokens": int(new_ids.numel()),
            "ttft_s": ttft_s, "total_s": total.seconds,
            "decode_tokens_per_s": (new_ids.numel() - 1) / decode_s if new_ids.numel() > 1 else None,
        }
        turns.append(stats)
        history.append({"role": "assistant", "content": text or "(empty)"})
        ctx.progress(turn, args.turns, unit="turn", **{k: v for k, v in stats.items() if k != "turn"})
        ctx.log(f"turn {turn}/{args.turns}: {stats['prompt_tokens']} prompt tokens, TTFT {ttft_s * 1000:.1f} ms, "
                f"{stats['new_tokens']} tokens in {total.seconds:.3f}s")
        ctx.log(f"  user:  {history[-2]['content']}")
        ctx.log(f"  model: {text!r}")
        if not text:
            ctx.finding("warning", f"turn {turn}: the model generated {stats['new_tokens']} tokens that decode "
                                   "to empty text", kb=None)

    memory = peak_memory(device)
    decode_rates = [t["decode_tokens_per_s"] for t in turns if t["decode_tokens_per_s"] is not None]
    metrics: dict[str, Any] = {
        "model": source.label, "weights": args.weights, "device": device, "dtype": dtype_name(dtype),
        "attn": attn_used, "quant": args.quant, "compile": args.compile, "params": n_params,
        "turns": len(turns), "max_new_tokens": args.max_new_tokens,
        "ttft_s": sum(t["ttft_s"] for t in turns) / len(turns) if turns else None,
        "ttft_s_last_turn": turns[-1]["ttft_s"] if turns else None,
        "decode_tokens_per_s": sum(decode_rates) / len(decode_rates) if decode_rates else None,
        "total_s": sum(t["total_s"] for t in turns),
        "prompt_tokens_last_turn": turns[-1]["prompt_tokens"] if turns else 0,
        "warmup_s": warm.seconds, "text": text, **memory,
    }
    if replay_watch is not None:
        _report_replay(replay_watch, replay_runs, device, metrics, ctx)
    for name in ("ttft_s", "decode_tokens_per_s", "peak_vram_bytes"):
        ctx.metric(name, metrics[name])
    if watch.found():
        kb = "nan-fp16-overflow" if dtype == torch.float16 else None
        message = (f"NaN/inf logits during generation ({dtype_name(dtype)}, attention {attn_used}); "
                   "fp16 overflow is the usual cause: try --dtype bf16 or fp32")
        ctx.finding("error", message, kb=kb)
        error = JobError(message, exit_code=1, kb=kb)
        error.metrics = metrics  # type: ignore[attr-defined]
        raise error
    ctx.log(f"done: TTFT {metrics['ttft_s'] * 1000:.1f} ms, decode {metrics['decode_tokens_per_s'] or 0:.1f} tok/s, "
            f"{vram_text(device, memory['peak_vram_bytes'])}")
    return metrics


def _timed(generate: Any, clock: _FirstTokenClock, replay_watch: ReplayWatch | None, device: str, input_ids: Any,
           new_tokens: int) -> tuple[Any, Timer, float, dict[str, int] | None]:
    """One timed generate: (output, its Timer, TTFT, what the CUDA-graph trees did during it)."""
    before = replay_watch.snapshot() if replay_watch is not None else None
    clock.reset()
    with Timer(device) as total:
        output = generate(input_ids, new_tokens)
    ttft_s = (clock.first - total.started) if clock.first is not None else total.seconds
    graphs = ReplayWatch.delta(before, replay_watch.snapshot()) if replay_watch is not None and before else None
    return output, total, ttft_s, graphs


def _replay_run(total_s: float, ttft_s: float, new_tokens: int, graphs: dict[str, int] | None) -> dict[str, Any]:
    decode_s = max(total_s - ttft_s, 1e-9)
    return {"per_token_s": decode_s / max(new_tokens - 1, 1),
            "decode_tokens_per_s": (new_tokens - 1) / decode_s if new_tokens > 1 else None, "graphs": graphs}


def _report_replay(replay_watch: ReplayWatch, runs: list[dict[str, Any]], device: str, metrics: dict[str, Any],
                   ctx: JobContext) -> None:
    """--compile: say whether the decode replays CUDA graphs; if it does not, its tok/s is no figure."""
    replay_watch.uninstall()
    replay = replay_verdict(device, runs, replay_watch.available, cudagraph_skips())
    metrics["cudagraph_replay"] = replay
    metrics["decode_tokens_per_s_runs"] = [r["decode_tokens_per_s"] for r in runs]
    ctx.log(f"CUDA graphs: {replay['verdict']}")
    if replay["verdict"].startswith("not replaying"):
        ctx.finding("warning", f"compiled decode {replay['verdict']}: its tokens/s measures graph recording, "
                               "not replay, and is not reported", kb=None)
        metrics["decode_tokens_per_s_not_replaying"] = metrics["decode_tokens_per_s"]
        metrics["decode_tokens_per_s"] = None
