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


# --- the cases of issue #12, as a table: (what, text in, the secret that must not come out, what must stay) ---
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQ"
HEX40 = "0123456789abcdef0123456789abcdef01234567"
import pytest  # noqa: E402
from opsconsole import redact  # noqa: E402

TEXT_CASES = [
    ("PGPASSWORD", "PGPASSWORD=pg-s3cret-1 psql", "pg-s3cret-1", "psql"),
    ("MYSQL_PWD", "export MYSQL_PWD=my-s3cret-2", "my-s3cret-2", "export"),
    ("DB_PASS", "DB_PASS: db-s3cret-3", "db-s3cret-3", "DB_PASS"),
    ("SECRET", "SECRET=plain-s3cret-4", "plain-s3cret-4", "SECRET="),
    ("APIKEY", "APIKEY=api-s3cret-5", "api-s3cret-5", "APIKEY"),
    ("quoted with spaces", 'PASSWORD="two words" next', "two words", "next"),
    ("python dict", f"{{'wandb_api_key': '{HEX40}'}}", HEX40, "wandb_api_key"),
    ("Bearer JWT", f"Authorization: Bearer {JWT}", JWT, "Authorization: Bearer"),
    ("bare JWT", f"token was {JWT} ok", JWT, "ok"),
    ("github_pat_", "using github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github_pat_11ABCDEFG", "using"),
    ("glpat-", "clone with glpat-AbCdEfGhIjKlMnOpQrSt12", "glpat-AbCdEfGhIjKlMnOpQrSt12", "clone"),
    ("npm_", "//registry.npmjs.org/:_authToken=npm_abcdefghijklmnopqrstuvwxyz0123456789", "npm_abcdefghij", "registry"),
    ("redis empty user", "connect redis://:r3dis-pw@cache:6379/0", "r3dis-pw", "cache:6379"),
    ("URL password with @", "postgres://app:p@ss-word@db.internal/prod", "p@ss-word", "db.internal/prod"),
    ("URL password with /", "https://ci:ab/cd+ef@git.example.com/x.git", "ab/cd+ef", "git.example.com/x.git"),
]


@pytest.mark.parametrize(("what", "text", "secret", "kept"), TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_text_redaction_table(what: str, text: str, secret: str, kept: str) -> None:
    out = redact_text(text)
    assert secret not in out and REDACTED in out, out
    assert kept in out, out


HARMLESS = ["loss: 0.31 lr=3e-4 step 120", "token ids 5 10 15", "key frames saved", "PWD=/home/u OLDPWD=/tmp",
            "Token indices sequence length is longer than the specified maximum", "AWS_REGION=eu-west-1"]


@pytest.mark.parametrize("text", HARMLESS)
def test_harmless_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


ARGV_CASES = [
    (["app", "--secret", "s3cret-flag-1"], "s3cret-flag-1"),
    (["mysql", "-u", "root", "-p", "s3cret-flag-2"], "s3cret-flag-2"),
    (["gpg", "--key", "s3cret-flag-3"], "s3cret-flag-3"),
    (["x", "--key=s3cret-flag-4"], "s3cret-flag-4"),
    (["x", "--db-pass", "s3cret-flag-5"], "s3cret-flag-5"),
]


@pytest.mark.parametrize(("argv", "secret"), ARGV_CASES, ids=[" ".join(a[1:2]) for a, _ in ARGV_CASES])
def test_argv_redaction_table(argv: list[str], secret: str) -> None:
    out = redact_argv(argv)
    assert secret not in " ".join(out) and out[0] == argv[0]


@pytest.mark.parametrize("name", ["PGPASSWORD", "MYSQL_PWD", "DB_PASS", "SECRET", "APIKEY", "ssh_passphrase"])
def test_missed_secret_names_are_secret(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["PWD", "OLDPWD", "PATH", "HF_HOME", "TOKENIZERS_PARALLELISM", "KEY"])
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)


def test_values_of_secret_named_env_vars_are_scrubbed_without_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("PGPASSWORD", "two words here")
    monkeypatch.setenv("SOME_FLAG_TOKEN", "true")  # too common to scrub
    redact.refresh_secret_values()
    try:
        out = redact_text("aws secret is wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY; pw two words here; true")
        assert "wJalrXUtn" not in out and "two words here" not in out and out.endswith("; true")
    finally:
        monkeypatch.undo()
        redact.refresh_secret_values()


def test_a_runs_secret_values_are_recognised_from_fingerprints_alone() -> None:
    value = "run-only-value-0d9f8a7b6c"
    fp = redact.fingerprint_env({"HF_TOKEN": value, "HOME": "/root"})
    assert value not in str(fp) and len(fp["digests"]) == 1
    line = f"downloading with {value} and KEY={value}x"
    assert value in redact_text(line)  # not known to this process yet
    redact.remember_fingerprints(fp)
    assert redact_text(f"downloading with {value}, then") == f"downloading with {REDACTED}, then"
    redact.remember_fingerprints({"salt": "zz"})  # a damaged cmd.json adds nothing and raises nothing
