"""Secret redaction for everything the project writes or shows.

Every place that prints or stores environment variables, command lines or log text goes
through here: cmd.json, result.json, reports, the env probe, the TUI, `runs logs/show`.

Three layers, all applied by `redact_text`:
1. names: `NAME=value`, `'name': 'value'`, `--flag value` where NAME looks like a secret;
2. shapes: token formats (hf_, sk-, AKIA, ghp_, github_pat_, glpat-, npm_, xox, JWTs, Bearer),
   URL passwords;
3. values: the values of every secret-named variable in this process's environment (a job
   that prints `aws secret is <value>` gives no name to go by), and of the environments of
   the runs whose text we show. A run's values are kept only as keyed BLAKE2 fingerprints
   (`fingerprint_env`, stored in cmd.json), so a console without the run's environment still
   recognises them, and no file holds a value in clear text.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets as _secrets
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "***REDACTED***"

_EXACT = {
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN", "WANDB_API_KEY",
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "GH_TOKEN",
    "NGC_API_KEY", "COMET_API_KEY", "NEPTUNE_API_TOKEN", "REPLICATE_API_TOKEN",
    "CIVITAI_API_KEY", "PASSWORD", "PASSWD", "SECRET", "APIKEY", "API_KEY", "TOKEN",
    "MYSQL_PWD",
}
_SECRET_NAME = re.compile(
    r"(^AWS_|^AZURE_.*(KEY|SECRET)|_TOKEN$|_SECRET$|SECRET_KEY|_KEY$|PASSWORD|PASSWD|_PWD$|_PASS$|_PASSPHRASE$"
    r"|_CREDENTIALS?$|^SECRET_|^TOKEN_|APIKEY|_API_KEY|_AUTH_TOKEN)", re.I)
# Harmless names that match the patterns above but carry no secret.
_NOT_SECRET = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
               "SSH_AUTH_SOCK", "KEY", "PWD", "OLDPWD", "TOKENIZERS_PARALLELISM", "PASSWORD_STORE_DIR"}
# Command-line flags whose next argument is a secret even where the name alone would not say so.
_SECRET_FLAGS = {"key", "secret", "p", "password", "pass", "passwd", "token", "api_key", "apikey", "auth"}

# scheme://[user]:password@host: the password may hold '@' and '/', so the last '@' of the word ends it.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^\s]+)@(?=[^\s@]*(\s|$))")
_ASSIGNMENT = re.compile(
    r"(?P<name>\b[A-Za-z_][A-Za-z0-9_.-]*)(?P<nq>['\"]?)(?P<sep>\s*[=:]\s*)"
    r"(?:(?P<q>['\"])(?P<quoted>[^'\"\n]*)(?P=q)|(?P<value>[^\s'\",;}\]]+))"
)
_AUTH_HEADER = re.compile(r"(?P<head>\b(?:Proxy-)?Authorization['\"]?\s*[:=]\s*['\"]?(?:(?:Bearer|Basic|Token|Bot)\s+)?)"
                          r"(?P<cred>[^\s'\",;]+)", re.I)
# Cheap test run before the full redaction: every secret name, URL password and token shape
# above contains one of these, so a line without any is returned untouched (log floods stay fast).
# (Lower-cased text with a case-sensitive pattern: about 8x faster than re.I here.)
_MAYBE_SECRET = re.compile(r"token|secret|key|pass|pwd|credential|auth|bearer|eyj|aws_|azure_|://|hf_|sk-|akia|asia"
                           r"|gh[pousr]_|github_pat_|glpat-|npm_|xox")
_TOKEN_SHAPES = [
    re.compile(r"\bhf_[A-Za-z0-9]{20,}\b"),             # Hugging Face
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}\b"),           # OpenAI-style
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),         # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),      # GitHub classic
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}\b"),    # GitHub fine-grained
    re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),        # GitLab
    re.compile(r"\bnpm_[A-Za-z0-9]{36,}\b"),            # npm
    re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b"),    # Slack
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),  # JWT
    re.compile(r"(?<=\bBearer )[A-Za-z0-9._~+/=-]{8,}", re.I),                     # Bearer <credential>
]
_MIN_VALUE_LEN = 6  # shorter values ("1", "true", "abc") would mangle every log they appear in
_NOT_VALUES = {"true", "false", "none", "null", "yes", "no", "enabled", "disabled", "changeme"}
_WORD = re.compile(r"[^\s'\"`,;(){}\[\]<>]+")


def is_secret_name(name: str) -> bool:
    upper = name.upper().replace("-", "_")
    if upper in _NOT_SECRET:
        return False
    return upper in _EXACT or bool(_SECRET_NAME.search(upper))


def _secret_values(env: Mapping[str, str]) -> set[str]:
    return {v for k, v in env.items() if is_secret_name(k) and isinstance(v, str) and len(v) >= _MIN_VALUE_LEN
            and v.strip().lower() not in _NOT_VALUES and REDACTED not in v}


class _Known:
    """The secret values this process must never show, and the fingerprints of runs' values."""

    def __init__(self) -> None:
        self.values: list[str] | None = None  # longest first; None = read os.environ on first use
        self.extra: set[str] = set()
        self.fingerprints: dict[bytes, tuple[set[int], set[str]]] = {}  # salt -> (lengths, digests)

    def current(self) -> list[str]:
        if self.values is None:
            self.values = sorted(_secret_values(os.environ) | self.extra, key=len, reverse=True)
        return self.values


_KNOWN = _Known()


def refresh_secret_values() -> None:
    """Re-read this process's environment (the CLI calls it at start; tests after setenv)."""
    _KNOWN.values = None


def remember_secret_values(env: Mapping[str, str]) -> None:
    """Also scrub the secret values of `env` (a run's environment) from everything shown."""
    _KNOWN.extra |= _secret_values(env)
    _KNOWN.values = None


def fingerprint_env(env: Mapping[str, str]) -> dict[str, Any]:
    """What a run dir keeps of its environment's secret values: keyed digests, never the values."""
    salt = _secrets.token_bytes(16)
    values = _secret_values(env)
    return {"salt": salt.hex(), "lengths": sorted({len(v) for v in values}),
            "digests": sorted(_digest(salt, v) for v in values)}


def remember_fingerprints(data: Any) -> None:
    """Recognise the values behind a run's fingerprints (cmd.json's `secret_fingerprints`)."""
    try:
        salt = bytes.fromhex(data["salt"])
        lengths = {int(n) for n in data["lengths"]}
        digests = {str(d) for d in data["digests"]}
    except (TypeError, KeyError, ValueError):
        return  # a damaged or foreign cmd.json: nothing to add
    if digests:
        old = _KNOWN.fingerprints.get(salt, (set(), set()))
        _KNOWN.fingerprints[salt] = (old[0] | lengths, old[1] | digests)


def _digest(salt: bytes, value: str) -> str:
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), key=salt, digest_size=16).hexdigest()


def _scrub_fingerprinted(text: str) -> str:
    """Words (and their parts after '=' or ':') whose digest matches a remembered run secret."""
    found: set[str] = set()
    shortest = min((min(lengths) for lengths, _ in _KNOWN.fingerprints.values() if lengths), default=0)
    for match in _WORD.finditer(text):
        word = match.group(0)
        if len(word) < shortest:
            continue
        candidates = {word, *(word[i + 1:] for i, c in enumerate(word) if c in "=:")}
        for salt, (lengths, digests) in _KNOWN.fingerprints.items():
            for candidate in candidates:
                if len(candidate) in lengths and _digest(salt, candidate) in digests:
                    found.add(candidate)
    for value in sorted(found, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """Copy of `env` with secret-named values replaced and URL passwords removed."""
    return {k: (REDACTED if is_secret_name(k) and v else redact_text(v)) for k, v in env.items()}


def _assignment(m: re.Match[str]) -> str:
    value = m["quoted"] if m["q"] else m["value"]
    if not m["sep"].strip() or not is_secret_name(m["name"]) or not value or value == REDACTED:
        return m.group(0)  # "token ids 5" or "key frames": a bare word, not an assignment
    quote = m["q"] or ""
    return f"{m['name']}{m['nq']}{m['sep']}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """Redact known secret values, passwords in URLs, NAME=value pairs with secret names, and token shapes."""
    if not text:
        return text
    for value in _KNOWN.current():
        if value in text:
            text = text.replace(value, REDACTED)
    if _KNOWN.fingerprints:
        text = _scrub_fingerprinted(text)
    if not _MAYBE_SECRET.search(text.lower()):
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _AUTH_HEADER.sub(lambda m: m["head"] + REDACTED if m["cred"] != REDACTED else m.group(0), text)
    text = _ASSIGNMENT.sub(_assignment, text)
    for shape in _TOKEN_SHAPES:
        text = shape.sub(REDACTED, text)
    return text


def redact_argv(argv: Iterable[str]) -> list[str]:
    """Redact secrets in a command line: `--token X`, `--api-key=X`, `-p X`, URLs, token shapes."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, value = arg.partition("=")
        name = flag.lstrip("-").replace("-", "_")
        if arg.startswith("-") and name and (is_secret_name(name) or name.lower() in _SECRET_FLAGS):
            if eq:
                out.append(f"{flag}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact_text(arg))
    return out


def redact_tree(value: Any, key: str | None = None) -> Any:
    """Deep copy of JSON-like data with secrets removed: values under secret-named keys, and
    secrets inside any string (URL passwords, NAME=value, token shapes, known values)."""
    if isinstance(value, Mapping):
        return {k: redact_tree(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # ("NAME", "value") pairs, as in CudaEnv.env
        if len(value) == 2 and isinstance(value[0], str) and is_secret_name(value[0]) and value[1]:
            return [value[0], REDACTED]
        return [redact_tree(v) for v in value]
    if isinstance(value, str):
        if key is not None and is_secret_name(key) and value:
            return REDACTED
        return redact_text(value)
    return value
