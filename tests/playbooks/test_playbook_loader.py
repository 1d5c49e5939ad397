"""Loading and validating playbook files: the bundled ones, and malformed files with file:line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from broken_files import KINDS as BROKEN_KINDS
from broken_files import make_broken

from opsconsole.config import Settings
from opsconsole.errors import ConfigError
from opsconsole.playbooks import load_playbook_file, load_playbooks

EXPECTED_IDS = {
    "cuda-oom", "driver-mismatch", "no-kernel-image", "torch-cpu-only", "gpu-health", "training-divergence",
    "sd-black-images", "slow-generation", "model-load-failure", "dataloader-shm", "multi-gpu-nccl", "disk-space",
    "first-time-box-check",
}

GOOD = """\
id: {id}
title: A test playbook
steps:
  - id: vram
    check: vram_free
    params: {{min_gib: 4}}
  - id: note
    manual: Look at the GPU.
    when: "vram is fail"
conclusion:
  - when: "vram is fail"
    message: Too little memory on {{gpu_name}}.
  - message: Fine.
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, trusted: bool = False, kb_refs: set[str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_playbook_file(path, trusted=trusted, kb_refs=kb_refs)
    return info.value


def test_bundled_playbooks_all_load():
    loaded = load_playbooks(Settings())
    assert loaded.errors == []
    assert EXPECTED_IDS <= set(loaded.playbooks)
    for playbook in loaded.playbooks.values():
        assert playbook.trusted and playbook.steps and playbook.title and playbook.description
        assert playbook.conclusion, f"{playbook.id} has no conclusion"


def test_a_good_file_loads_with_defaults_applied(tmp_path):
    playbook = load_playbook_file(write(tmp_path, "mine", GOOD.format(id="mine")), trusted=False)
    vram = playbook.step("vram")
    assert vram.params == {"min_gib": 4, "min_free_fraction": 0.1, "gpu": "all", "severity": "fail"}
    assert playbook.step("note").when.describe() == "vram is fail"


@pytest.mark.parametrize("text, line, words", [
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    check: [unclosed\n", 6, "not valid YAML"),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    check: vram_fre\n", 5, "unknown check `vram_fre`"),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    check: vram_free\n    params:\n      min_gib: lots\n", 7,
     "`min_gib` of `vram_free` must be a number"),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    check: vram_free\n    params: {gpus: 1}\n", 6,
     "has no parameter `gpus`"),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    check: module_importable\n", 5, "needs parameter `module`"),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    check: vram_free\n    when: \"later is fail\"\n  - id: later\n    manual: hi\n",
     6, "not an earlier step"),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    check: vram_free\n  - id: a\n    manual: again\n", 6, "duplicate step id"),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    chek: vram_free\n", 5, "unknown key `chek`"),
    ("id: other\ntitle: x\nsteps:\n  - id: a\n    manual: hi\n", 1, "differs from the file name"),
    ("id: bad\ntitle: x\ntitle: y\nsteps: []\n", 3, "duplicate key `title`"),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    manual: hi\nconclusion:\n  - message: \"{nope}\"\n", 7, "unknown placeholder"),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    check: env_var\n    params: {name: MY_VAR, expect: valid}\n", 6,
     "no validator for MY_VAR"),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    check: gpu_throttle\n    params: {gpu: -1}\n", 6, '"all" or a GPU index'),
    ("id: bad\ntitle: x\nsteps:\n  - id: a\n    check: smoke_run\n    params: {kind: rm-rf}\n", 6, "must be one of"),
    ("id: bad\ntitle: x\nsteps: []\n", 3, "non-empty list"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, "bad", text)
    error = error_of(path)
    assert error.path == str(path)
    assert error.line == line, str(error)
    assert words in str(error)
    assert str(error).startswith(f"{path}:{line}: ")


COMMAND = "id: cmd\ntitle: x\nsteps:\n  - id: a\n    command: {argv}\n"


def test_command_steps_need_a_trusted_directory(tmp_path):
    path = write(tmp_path, "cmd", COMMAND.format(argv="[nvidia-smi, -q]"))
    error = error_of(path, trusted=False)
    assert error.line == 5 and "only allowed in trusted playbooks" in str(error) and "trusted_playbook_dirs" in str(error)
    playbook = load_playbook_file(path, trusted=True)
    assert playbook.step("a").argv == ("nvidia-smi", "-q")


@pytest.mark.parametrize("argv, words", [
    ("[rm, -rf, /tmp/x]", "not on the allow-list"),
    ("[bash, -c, nvidia-smi]", "not on the allow-list"),
    ("[nvidia-smi, -r, -i, '0']", "`nvidia-smi -r` is not an allowed read-only argument"),
    ("[nvidia-smi, --power-limit=200]", "`nvidia-smi --power-limit=200` is not an allowed"),
    ("[dmesg, -C]", "`dmesg -C` is not an allowed"),
    ("nvidia-smi -q", "must be a list"),
    # the bypasses of the red team (issue #12, item 3), each refused by the allow-list of shapes
    ("[/tmp/x/df, -h]", "not a path"),
    ("[./df, -h]", "not a path"),
    ("[ip, -batch, /tmp/cmds]", "`ip -batch` is not an allowed"),
    ("[dmesg, -Tc]", "`dmesg -Tc` is not an allowed"),
    ("[dmesg, --read-cl]", "`dmesg --read-cl` is not an allowed"),
    ("[dmesg, -n1]", "`dmesg -n1` is not an allowed"),
    ("[journalctl, --vacuum-si=1K]", "`journalctl --vacuum-si=1K` is not an allowed"),
    ("[ip, route, append, 10.0.0.0/8, dev, lo]", "`ip route append`: subcommand not allowed"),
    ("[ip, ro, app, 10.0.0.0/8]", "`ip ro`: subcommand not allowed"),
    ("[nvidia-smi, -q, -f, /etc/passwd]", "`nvidia-smi -f` is not an allowed"),
    ("[ip, netns, exec, x, sh]", "`ip netns exec`: subcommand not allowed"),
    ("[dcgmi, diag, -r, long]", "`dcgmi diag -r long`: that value is not allowed"),
    ("[dcgmi, health, -s, a]", "`dcgmi health -s` is not an allowed"),
    ("[dcgmi, group, -c, mygroup]", "`dcgmi group -c` is not an allowed"),
    ("[nvidia-smi, mig, --create-gpu-instance, '9']", "`nvidia-smi mig --create-gpu-instance` is not an allowed"),
    ("[nvidia-smi, drain, --modify, '1']", "`nvidia-smi drain`: subcommand not allowed"),
    ("[nvidia-smi, -acp, '0']", "`nvidia-smi -acp` is not an allowed"),
    ("[nvidia-smi, -i, -r]", "`nvidia-smi -i -r`: that value is not allowed"),
    ("[df, --, -x]", "`df --` is not an allowed"),
    ("[nvidia-smi, -q, -d]", "`nvidia-smi -d` needs a value"),
])
def test_commands_must_be_read_only_diagnostics(tmp_path, argv, words):
    error = error_of(write(tmp_path, "cmd", COMMAND.format(argv=argv)), trusted=True)
    assert error.line == 5 and words in str(error), str(error)


@pytest.mark.parametrize("argv", [
    "[nvidia-smi]", "[nvidia-smi, -L]", "[nvidia-smi, -q, -d, 'ECC,TEMPERATURE', -i, '0']",
    "[nvidia-smi, '--query-gpu=index,temperature.gpu', '--format=csv,noheader']", "[nvidia-smi, topo, -m]",
    "[nvidia-smi, nvlink, -s]", "[nvidia-smi, mig, -lgi]", "[dcgmi, diag, -r, '1']", "[dcgmi, health, -c, -g, '0']",
    "[df, -h, /dev/shm]", "[modinfo, -F, version, nvidia]", "[dmesg, -T, '--level=err,warn']",
    "[journalctl, -k, -b, --no-pager, --lines=200]", "[ip, -br, link, show, dev, eth0]", "[ip, route, get, 10.1.2.3]",
])
def test_read_only_shapes_load(tmp_path, argv):
    assert load_playbook_file(write(tmp_path, "cmd", COMMAND.format(argv=argv)), trusted=True).step("a").argv


def test_unknown_kb_reference(tmp_path):
    text = "id: kbref\ntitle: x\napplies_to: [cuda_oom, no-such-entry]\nsteps:\n  - id: a\n    check: log_matches_kb\n" \
           "    params: {ids: [also-missing]}\n"
    path = write(tmp_path, "kbref", text)
    error = error_of(path, kb_refs={"cuda_oom", "cuda-oom-other-process"})
    assert error.line == 3 and "unknown KB id or category `no-such-entry`" in str(error)


def test_kb_references_are_checked_against_the_real_kb(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    write(tmp_path / "opsconsole" / "playbooks", "kbref",
          "id: kbref\ntitle: x\nsteps:\n  - id: a\n    check: log_matches_kb\n    params: {ids: [cuda-oom-made-up]}\n")
    loaded = load_playbooks(Settings())
    (error,) = loaded.errors
    assert error.line == 6 and "cuda-oom-made-up" in str(error)


def test_a_broken_file_disables_only_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    user_dir = tmp_path / "opsconsole" / "playbooks"
    write(user_dir, "mine", GOOD.format(id="mine"))
    write(user_dir, "broken", "id: broken\ntitle: x\nsteps:\n  - id: a\n    check: nope\n")
    write(user_dir, "untrusted", COMMAND.replace("cmd", "untrusted").format(argv="[df, -h]"))
    loaded = load_playbooks(Settings())
    assert "mine" in loaded.playbooks and EXPECTED_IDS <= set(loaded.playbooks)
    assert {Path(e.path).stem for e in loaded.errors} == {"broken", "untrusted"}
    assert loaded.error_for("broken").line == 5
    # the same directory, trusted in the settings, may run commands
    trusted = load_playbooks(Settings(trusted_playbook_dirs=(str(user_dir),)))
    assert "untrusted" in trusted.playbooks and trusted.playbooks["untrusted"].trusted


def test_every_check_is_documented():
    from opsconsole.paths import REPO_DIR
    from opsconsole.playbooks import all_checks

    docs = (REPO_DIR / "docs" / "playbooks.md").read_text()
    missing = [name for name, spec in all_checks().items()
               if f"| `{name}` |" not in docs or any(f"`{param}`" not in docs for param in spec.params)]
    assert missing == []


BOMB = "id: bomb\ntitle: x\nsteps: []\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(8))


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    """~400 bytes, 10^9 items expanded: `playbook list` took 31 s and hit MemoryError."""
    error = error_of(write(tmp_path, "bomb", BOMB))
    assert error.line == 4 and "anchors and aliases" in str(error)


@pytest.mark.parametrize("template", ["{gpu_name!z}", "{gpu_name!r}", "{gpu_name:d}", "{gpu_name:>300000000}",
                                      "{gpu_name.__class__}", "{gpu_name[0]}", "{}"])
def test_conclusion_templates_are_plain_known_fields(tmp_path, template):
    """A format spec or conversion passed validation and the run ended in a traceback (or took 0.9 GB)."""
    text = f"id: bad\ntitle: x\nsteps:\n  - id: a\n    manual: hi\nconclusion:\n  - message: \"GPU {template}\"\n"
    error = error_of(write(tmp_path, "bad", text))
    assert error.line == 7 and ("conversion or format spec" in str(error) or "unknown placeholder" in str(error))


@pytest.mark.parametrize("make", BROKEN_KINDS)
def test_a_broken_file_in_the_user_dir_disables_only_itself(tmp_path, monkeypatch, make):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    user_dir = tmp_path / "opsconsole" / "playbooks"
    write(user_dir, "mine", GOOD.format(id="mine"))
    make_broken(user_dir / "broken.yaml", make)
    loaded = load_playbooks(Settings())
    assert "mine" in loaded.playbooks
    (error,) = [e for e in loaded.errors if "broken.yaml" in e.path]
    assert "cannot read" in str(error) or "not a regular file" in str(error)
