"""Plant secrets in the environment, a run's argv and its log; grep every output for them.

Outputs: status --json, the report bundle (JSON, Markdown, tar.gz), a run's cmd.json and
result.json, `runs show` (text and --json), `runs list --json`, diagnose (text and --json),
the CUDA probe, and `playbook run --json` with the log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from opsconsole.telemetry import probe_cuda_env
from opsconsole.telemetry.snapshot import to_jsonable

SECRETS = {
    "HF_TOKEN": "hf_PlantedHfTokenValue0123456789abcd",
    "HUGGING_FACE_HUB_TOKEN": "planted-hub-token-4471",
    "WANDB_API_KEY": "planted-wandb-key-9182",
    "OPENAI_API_KEY": "sk-plantedOpenAiKey0123456789abcdefgh",
    "AWS_SECRET_ACCESS_KEY": "planted/aws+secret=3310",
    "MY_X_TOKEN": "planted-my-x-token-5521",
    "FOO_SECRET": "planted-foo-secret-6630",
    "BAR_KEY": "planted-bar-key-7741",
}
URL_PASSWORD = "planted-url-pass-8852"
URL = f"https://deploy:{URL_PASSWORD}@registry.example.com/models"
VALUES = [*SECRETS.values(), URL_PASSWORD]


def leaks(text: str) -> list[str]:
    return [v for v in VALUES if v in text]


def opsconsole(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opsconsole", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIP_INDEX_URL", URL)
    # A log that prints the secrets the way real tools do: NAME=value, a URL with a password,
    # and a traceback so the KB has something to diagnose.
    log = tmp_path / "train.log"
    lines = [f"export {name}={value}" for name, value in SECRETS.items()]
    lines += [f"Downloading from {URL}/gemma.safetensors",
              "Traceback (most recent call last):",
              "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
              f"of 79.19 GiB of which 1.2 GiB is free. HF_TOKEN={SECRETS['HF_TOKEN']}"]
    log.write_text("\n".join(lines) + "\n")
    return log


def test_no_output_contains_a_planted_secret(planted: Path, tmp_path: Path) -> None:
    outputs: dict[str, str] = {}
    message = " ".join(f"{k}={v}" for k, v in SECRETS.items()) + f" while fetching {URL}"

    run = opsconsole("run", "selftest", "--lines", "2", "--raise", message, "--foreground", "--json")
    outputs["run --foreground --json"] = run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert result["status"] == "failed"  # the run really ran and failed with the planted message
    run_dir = Path(opsconsole("runs", "show", result["id"], "--json").stdout and
                   json.loads(opsconsole("runs", "show", result["id"], "--json").stdout)["record"]["dir"])
    assert any(v in (run_dir / "output.log").read_text() for v in VALUES)  # the raw log holds them
    for name in ("cmd.json", "result.json"):
        outputs[name] = (run_dir / name).read_text()
    assert json.loads(outputs["cmd.json"])["env"]["HF_TOKEN"] == "***REDACTED***"
    outputs["runs show"] = opsconsole("runs", "show", result["id"]).stdout
    outputs["runs show --json"] = opsconsole("runs", "show", result["id"], "--json").stdout
    outputs["runs list --json"] = opsconsole("runs", "list", "--json").stdout

    outputs["status --json"] = opsconsole("status", "--json").stdout
    outputs["status --simulate --json"] = opsconsole("status", "--simulate", "healthy-8xh100", "--json").stdout
    outputs["probe"] = json.dumps(to_jsonable(probe_cuda_env(sys.executable, timeout=60)))

    diag = opsconsole("diagnose", str(planted))
    assert "cuda-oom" in diag.stdout, diag.stdout + diag.stderr
    outputs["diagnose"] = diag.stdout + diag.stderr
    outputs["diagnose --json"] = opsconsole("diagnose", str(planted), "--json").stdout
    playbook = opsconsole("playbook", "run", "torch-cpu-only", "--json", "--log", str(planted))
    assert json.loads(playbook.stdout)["steps"], playbook.stderr
    outputs["playbook run --json"] = playbook.stdout + playbook.stderr

    bundle = tmp_path / "bundle"
    report = opsconsole("report", "--out", str(bundle), "--json")
    assert report.returncode == 0, report.stderr
    paths = json.loads(report.stdout)
    for key in ("json", "markdown"):
        outputs[f"report {key}"] = Path(paths[key]).read_text()
    assert result["id"] in outputs["report json"]  # the failed run and its log tail are in the bundle
    with tarfile.open(paths["tar"]) as tar:
        for member in tar.getmembers():
            outputs[f"report.tar.gz:{member.name}"] = tar.extractfile(member).read().decode()

    leaked = {name: leaks(text) for name, text in outputs.items() if leaks(text)}
    assert not leaked, f"secrets leaked: {leaked}"
    assert "***REDACTED***" in outputs["report json"]


# Values a job prints with no name next to them (issue #12, High 1), and the shapes it prints.
VALUE_SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzPLANTED",
    "WANDB_API_KEY": "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
    "PGPASSWORD": "pg-planted-4471",
    "MYSQL_PWD": "mysql-planted-5582",
    "DB_PASS": "dbpass-planted-6693",
    "APIKEY": "apikey-planted-7704",
}
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.cGxhbnRlZC1zaWduYXR1cmU"
SHAPED = [f"{{'wandb_api_key': '{'f' * 40}'}}", 'PASSWORD="two planted words"', f"Authorization: Bearer {JWT}",
          "github_pat_11PLANTED0123456789_abcdefghijklmnopqrstuv", "glpat-PlantedGitlabToken01",
          "npm_PlantedNpmToken0123456789abcdefghijkl", "redis://:redis-planted-pw@cache:6379"]
SHAPED_VALUES = ["f" * 40, "two planted words", JWT, "github_pat_11PLANTED", "glpat-PlantedGitlabToken01",
                 "npm_PlantedNpmToken", "redis-planted-pw"]


def test_secret_values_a_job_prints_are_redacted_in_every_output_even_in_a_console_without_them(
        tmp_path: Path) -> None:
    import os

    with_secrets = dict(os.environ, **VALUE_SECRETS)
    without = {k: v for k, v in os.environ.items() if k not in VALUE_SECRETS}

    def console(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "opsconsole", *args], capture_output=True, text=True,
                              timeout=120, env=env)

    run = console(with_secrets, "run", "selftest", "--lines", "1", "--echo-env", ",".join(VALUE_SECRETS),
                  "--job-error", " ; ".join(SHAPED), "--foreground", "--json")
    outputs = {"run --foreground --json": run.stdout + run.stderr}
    run_id = json.loads(run.stdout)["id"]
    shown = json.loads(console(without, "runs", "show", run_id, "--json").stdout)
    run_dir = Path(shown["record"]["dir"])
    raw = (run_dir / "output.log").read_text()
    assert all(v in raw for v in VALUE_SECRETS.values())  # the job really printed them, nameless
    for name in ("cmd.json", "result.json", "events.jsonl"):
        outputs[name] = (run_dir / name).read_text()
    for env_name, env in (("with", with_secrets), ("without", without)):
        outputs[f"runs logs ({env_name} the env)"] = console(env, "runs", "logs", run_id).stdout
        outputs[f"runs show ({env_name})"] = console(env, "runs", "show", run_id).stdout
        outputs[f"runs show --json ({env_name})"] = console(env, "runs", "show", run_id, "--json").stdout
        outputs[f"runs list --json ({env_name})"] = console(env, "runs", "list", "--json").stdout
        outputs[f"runs attach ({env_name})"] = console(env, "runs", "attach", run_id).stdout
        report = console(env, "report", "--out", str(tmp_path / f"bundle-{env_name}"), "--json")
        assert report.returncode == 0, report.stderr
        paths = json.loads(report.stdout)
        for key in ("json", "markdown"):
            outputs[f"report {key} ({env_name})"] = Path(paths[key]).read_text()
        with tarfile.open(paths["tar"]) as tar:
            for member in tar.getmembers():
                outputs[f"tar {member.name} ({env_name})"] = tar.extractfile(member).read().decode()
    assert "value #1 is" in outputs["runs logs (without the env)"]  # the log itself is shown, scrubbed
    planted = [*VALUE_SECRETS.values(), *SHAPED_VALUES]
    leaked = {name: [v for v in planted if v in text] for name, text in outputs.items()}
    assert not {k: v for k, v in leaked.items() if v}, f"secrets leaked: {leaked}"
