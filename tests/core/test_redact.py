"""Secrets never leave the process in clear text."""

from __future__ import annotations

from opsconsole.redact import REDACTED, is_secret_name, redact_argv, redact_env, redact_text

HF = "hf_abcdefghijklmnopqrstuvwxyz0123"


def test_env_redaction_covers_named_and_pattern_secrets():
    env = {
        "HF_TOKEN": HF,
        "HUGGING_FACE_HUB_TOKEN": "x1",
        "WANDB_API_KEY": "w" * 40,
        "OPENAI_API_KEY": "sk-" + "a" * 30,
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "AWS_ACCESS_KEY_ID": "AKIAABCDEFGHIJKLMNOP",
        "MY_SERVICE_TOKEN": "t",
        "DB_SECRET": "d",
        "SIGNING_KEY": "k",
        "PIP_INDEX_URL": "https://user:hunter2@pypi.example/simple",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "AWS_REGION": "eu-west-1",
    }
    out = redact_env(env)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY",
                 "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MY_SERVICE_TOKEN", "DB_SECRET", "SIGNING_KEY"):
        assert out[name] == REDACTED, name
    assert "hunter2" not in out["PIP_INDEX_URL"] and "user:" in out["PIP_INDEX_URL"]
    assert out["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert out["AWS_REGION"] == "eu-west-1"


def test_text_redaction_of_assignments_urls_and_token_shapes():
    text = (f"export HF_TOKEN={HF}\nWANDB_API_KEY: 'abc123'\n"
            "git clone https://bob:pa55word@github.com/x/y\nloaded token hf_ZZZZZZZZZZZZZZZZZZZZZZZZ ok\n"
            "lr=0.001 batch_size=4")
    out = redact_text(text)
    for secret in (HF, "abc123", "pa55word", "hf_ZZZZZZZZZZZZZZZZZZZZZZZZ"):
        assert secret not in out
    assert "lr=0.001 batch_size=4" in out  # harmless assignments untouched


def test_argv_redaction_handles_flag_forms():
    argv = ["train.py", "--hf-token", HF, "--api_key=sekrit", "--lr", "1e-4", "--token", "abc",
            "--url", "https://u:p4ss@host/x"]
    out = redact_argv(argv)
    assert HF not in out and "sekrit" not in " ".join(out) and "abc" not in out and "p4ss" not in " ".join(out)
    assert out[4:6] == ["--lr", "1e-4"]


def test_secret_name_rules():
    assert is_secret_name("hf_token")
    assert is_secret_name("GITHUB_TOKEN")
    assert not is_secret_name("HF_HOME")
    assert not is_secret_name("PYTORCH_CUDA_ALLOC_CONF")
