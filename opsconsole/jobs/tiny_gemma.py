"""The `tiny` Gemma 2: a small random-weight Gemma2ForCausalLM and a tokenizer built offline.

Built once into $XDG_CACHE_HOME/opsconsole/tiny/gemma with `save_pretrained`, then always
loaded back with `from_pretrained` (the real loading path). The architecture keeps what
makes Gemma 2 Gemma 2: alternating sliding-window / global attention, attention and final
logit soft-capping, GQA, tied embeddings.

The tokenizer is a byte-level BPE trained (tokenizers library) on the bundled instruction
data, with Gemma's special tokens (<pad>=0, <eos>=1, <bos>=2, <unk>=3, <start_of_turn>,
<end_of_turn>) and the real Gemma chat template. `--weights random` full-size architectures
reuse it: its ids are a subset of their 256k vocabulary (generation is kept inside it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

TINY_VERSION = 2
MARKER_FILE = "opsconsole-tiny.json"
TOKENIZER_VOCAB = 1024
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
PAD_ID, EOS_ID, BOS_ID = 0, 1, 2

# The chat template of google/gemma-2-*-it (system role unsupported, roles must alternate).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

TINY_CONFIG: dict[str, Any] = {
    "vocab_size": TOKENIZER_VOCAB,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "query_pre_attn_scalar": 16,
    "sliding_window": 32,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "max_position_embeddings": 512,
    "pad_token_id": PAD_ID,
    "eos_token_id": EOS_ID,
    "bos_token_id": BOS_ID,
    "tie_word_embeddings": True,
    "initializer_range": 0.1,  # larger than 0.02 so logits span a range a few LoRA steps can move
}

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
DATA_FILE = Path(__file__).resolve().parent / "data" / "instructions.jsonl"
ARCHITECTURES = ("gemma-2-2b", "gemma-2-9b", "gemma-2-27b")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "opsconsole" / "tiny" / "gemma"


def load_instructions() -> list[dict[str, str]]:
    """The bundled instruction set: [{"instruction", "response"}, ...]."""
    with open(DATA_FILE, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def instruction_messages(row: dict[str, str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": row["instruction"]}, {"role": "assistant", "content": row["response"]}]


def build_tokenizer() -> Any:
    """Byte-level BPE trained on the bundled data, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = []
    for row in load_instructions():
        corpus += [row["instruction"], row["response"], "user\nmodel\n"]
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"], chat_template=GEMMA_CHAT_TEMPLATE,
        padding_side="left", model_max_length=TINY_CONFIG["max_position_embeddings"],
    )


def _is_built(target: Path) -> bool:
    try:
        return json.loads((target / MARKER_FILE).read_text()).get("version") == TINY_VERSION
    except (OSError, ValueError):
        return False


def ensure_tiny_gemma() -> Path:
    """Build the tiny model + tokenizer into the cache once.

    A file lock serialises builders (torchrun ranks start together) and the finished
    directory appears by atomic rename, so a reader never sees half a model.
    """
    import fcntl

    target = cache_dir()
    if _is_built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".gemma.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _is_built(target):
            _build(target)
    return target


def _build(target: Path) -> None:
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # save_pretrained writes nothing on ranks != 0 once a process group exists
        raise RuntimeError("build the tiny Gemma (ensure_tiny_gemma) before init_process_group")
    staging = Path(tempfile.mkdtemp(prefix=".gemma-build-", dir=target.parent))
    try:
        torch.manual_seed(1234)  # the same tiny weights on every machine
        model = Gemma2ForCausalLM(Gemma2Config(**TINY_CONFIG))
        model.save_pretrained(staging)
        build_tokenizer().save_pretrained(staging)
        (staging / MARKER_FILE).write_text(json.dumps({"version": TINY_VERSION, "config": TINY_CONFIG}))
        if target.exists():  # an older version: replaced under the lock
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def architecture_config(name: str) -> Any:
    """Gemma2Config of a named full-size architecture (shipped as data: configs/NAME.json)."""
    from transformers import Gemma2Config

    path = CONFIGS_DIR / f"{name}.json"
    with open(path, encoding="utf-8") as fh:
        return Gemma2Config(**json.load(fh))
