"""gemma-lora: a few peft LoRA steps on Gemma 2 (q/k/v/o projections) over the bundled instructions.

The data are chat-templated conversations; only the model's answer tokens carry a loss.
At the end rank 0 saves the adapter, loads it onto a freshly built base model with
PeftModel.from_pretrained, checks that the reloaded model gives the trained model's
logits, and generates once (the round trip a real fine-tune depends on).

Under torchrun (`opsconsole run gemma-lora --gpus N`) it trains with DDP (nccl on CUDA,
gloo on CPU); each rank also writes `ranks/rank-N.json` (its synced losses and a parameter
checksum) so that agreement between ranks can be checked.
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any

from .common import JobContext, JobError, add_common_job_options, check_range, resolve_dtype, seed_everything
from .gemma_model import ATTN_CHOICES, check_tokens, load_model, load_tokenizer, resolve_source, validate_backends
from .tiny_gemma import ensure_tiny_gemma, instruction_messages, load_instructions
from .training import (DistEnv, TrainMonitor, add_trainer_options, barrier, batch_indices, params_checksum,
                       setup_distributed, teardown_distributed, validate_trainer_options, wrap_ddp)

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
TINY_LR, DEFAULT_LR = 1e-2, 2e-4
IGNORE_INDEX = -100


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemma-lora", description=__doc__.splitlines()[0])
    add_common_job_options(parser)
    add_trainer_options(parser, steps=20, lr=None, batch=4,
                        lr_help=f"AdamW learning rate (default {TINY_LR:g} for --model tiny, else {DEFAULT_LR:g})")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = 2 x rank)")
    parser.add_argument("--seq-len", type=int, default=64, help="tokens per sample (truncated / padded)")
    parser.add_argument("--attn", default="eager", choices=ATTN_CHOICES,
                        help="attention backend (eager: Gemma 2's soft-capping is exact in training)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens generated after the reload")
    return parser


def validate(args: argparse.Namespace) -> None:
    """Cheap flag checks (no torch): JobError exit 3."""
    validate_trainer_options(args)
    check_range("--rank", args.rank, 1, 256)
    if args.seq_len < 16:
        raise JobError(f"--seq-len {args.seq_len}: must be at least 16 (the chat template alone takes ~10)",
                       exit_code=3)
    source = resolve_source(args.model)
    check_tokens("--seq-len", args.seq_len, source)
    check_tokens("--max-new-tokens", args.max_new_tokens, source)
    validate_backends(args.attn, "none")


def encode_dataset(tokenizer: Any, seq_len: int) -> dict[str, Any]:
    """input_ids / attention_mask / labels [N, seq_len]; labels mask the prompt and the padding."""
    import torch

    ids, masks, labels = [], [], []
    for row in load_instructions():
        messages = instruction_messages(row)
        full = tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"]
        prompt = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, return_dict=True)["input_ids"]
        full = list(full)[:seq_len]
        label = [IGNORE_INDEX] * min(len(prompt), len(full)) + full[len(prompt):]
        pad = seq_len - len(full)
        ids.append(full + [tokenizer.pad_token_id] * pad)
        masks.append([1] * len(full) + [0] * pad)
        labels.append(label + [IGNORE_INDEX] * pad)
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(masks), "labels": torch.tensor(labels)}


def _base_model(args: argparse.Namespace, device: str, dtype: Any) -> Any:
    """The frozen base. Seeded, so a --weights random base is rebuilt identically for the reload."""
    seed_everything(args.seed)
    return load_model(resolve_source(args.model), weights=args.weights, device=device, dtype=dtype, attn=args.attn)


def main(args: argparse.Namespace, ctx: JobContext) -> dict[str, Any]:
    validate(args)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # peft x transformers 5 noise
    if args.lr is None:
        args.lr = TINY_LR if args.model == "tiny" else DEFAULT_LR
    if args.model == "tiny":
        ensure_tiny_gemma()  # before the process group exists: save_pretrained only writes on rank 0 after
    dist = setup_distributed(args.device)
    try:
        return _train(args, ctx, dist)
    finally:
        teardown_distributed(dist)


def _train(args: argparse.Namespace, ctx: JobContext, dist: DistEnv) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model

    device = dist.device
    dtype = resolve_dtype(args.dtype, device)
    tokenizer = load_tokenizer(resolve_source(args.model), args.weights)
    base = _base_model(args, device, dtype)
    if args.grad_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.config.use_cache = False
    lora = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules=LORA_TARGETS,
                      task_type="CAUSAL_LM")
    seed_everything(args.seed)
    model = get_peft_model(base, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    ctx.log(f"LoRA r={args.rank} on {','.join(LORA_TARGETS)}: {n_trainable / 1e3:.1f}k trainable of "
            f"{n_total / 1e6:.2f}M params; device {device}, dtype {base.dtype}, attention "
            f"{base.config._attn_implementation}, world size {dist.world_size} ({dist.backend or 'single process'})")
    ddp_model = wrap_ddp(model, dist)
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    data = encode_dataset(tokenizer, args.seq_len)
    batches = batch_indices(len(data["labels"]), args.batch, dist, seed=args.seed)
    monitor = TrainMonitor(ctx, args, total_steps=args.steps, device=device, dtype=dtype, dist=dist)

    for step in range(1, args.steps + 1):
        index = torch.tensor(next(batches))
        batch = {k: v[index].to(device) for k, v in data.items()}
        loss = ddp_model(**batch).loss
        monitor.check_loss(step, loss)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        monitor.report(step, lr=optimizer.param_groups[0]["lr"], grad_norm=grad_norm, samples=args.batch,
                       tokens=int(batch["attention_mask"].sum()))
        if monitor.should_stop():
            ctx.log(f"stop requested: stopping after step {step}, saving the adapter")
            break

    metrics = monitor.finish()
    metrics.update(lora_rank=args.rank, trainable_params=n_trainable, lr=args.lr)
    _write_rank_report(ctx, dist, monitor, trainable)
    adapter_dir = ctx.run_dir / "artifacts" / "adapter"
    if dist.is_main:
        model.save_pretrained(adapter_dir)
        ctx.artifact(adapter_dir, "adapter")
        ctx.log(f"adapter saved to {adapter_dir}")
        metrics["adapter_path"] = str(adapter_dir)
    reload = dist.is_main and not monitor.should_stop()
    if reload:
        probe = {k: v[:2].to(device) for k, v in data.items() if k != "labels"}
        model.eval()
        with torch.inference_mode():
            trained_logits = model(**probe).logits.float()
    # free the trained model before a second base is built (two 9B/27B bases don't fit one GPU)
    del ddp_model, model, base, optimizer, trainable
    _release_memory(device)
    if reload:
        metrics.update(_reload_and_generate(args, ctx, trained_logits, probe, tokenizer, adapter_dir, device, dtype))
    barrier(dist)
    return metrics


def _release_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _write_rank_report(ctx: JobContext, dist: DistEnv, monitor: TrainMonitor, trainable: list[Any]) -> None:
    """ranks/rank-N.json: this rank's synced losses and parameter checksum (DDP agreement check)."""
    if not dist.enabled:
        return
    path = ctx.run_dir / "ranks" / f"rank-{dist.rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rank": dist.rank, "world_size": dist.world_size, "losses": monitor.losses,
                                "params_checksum": params_checksum(trainable)}))


def _reload_and_generate(args: argparse.Namespace, ctx: JobContext, trained_logits: Any, probe: dict[str, Any],
                         tokenizer: Any, adapter_dir: Any, device: str, dtype: Any) -> dict[str, Any]:
    """Load the saved adapter onto a fresh base, compare logits with the trained model's, generate once."""
    import torch
    from peft import PeftModel

    reloaded = PeftModel.from_pretrained(_base_model(args, device, dtype), adapter_dir).eval()
    with torch.inference_mode():
        reloaded_logits = reloaded(**probe).logits.float()
    max_diff = float((trained_logits - reloaded_logits).abs().max())
    ctx.log(f"adapter reloaded onto a fresh base: max |logit difference| vs the trained model = {max_diff:.3g}")
    if not max_diff < 1e-2 * max(1.0, float(trained_logits.abs().max())):
        raise JobError(f"the reloaded adapter does not reproduce the trained model (max logit difference {max_diff:.3g})")

    question = load_instructions()[0]["instruction"]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_dict=True, return_tensors="pt")["input_ids"].to(device)
    with torch.inference_mode():
        output = reloaded.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                   max_new_tokens=args.max_new_tokens, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(output[0, prompt.shape[1]:], skip_special_tokens=True).strip()
    ctx.log(f"generation with the reloaded adapter:\n  user:  {question}\n  model: {text!r}")
    return {"adapter_reload_max_abs_diff": max_diff, "sample_text": text}
