"""KB loader: good entries load, bad ones are reported as file:line and skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from broken_files import KINDS as BROKEN_KINDS
from broken_files import make_broken
from kb_helpers import GOOD_ENTRY, write_entry
from opsconsole.errors import ConfigError
from opsconsole.kb import CATEGORIES, load_kb
from opsconsole.kb.loader import playbook_ids
from opsconsole.paths import bundled_dir

PLAYBOOKS = ["gpu-health", "cuda-oom"]


@pytest.fixture
def playbook_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "playbooks"
    directory.mkdir()
    for pid in PLAYBOOKS:
        (directory / f"{pid}.yaml").write_text(f"id: {pid}\ntitle: x\nsteps: []\n")
    return directory


def _load(tmp_path: Path, playbook_dir: Path):
    kb = load_kb(extra_dirs=[tmp_path / "kb"], playbook_dirs=[playbook_dir])
    extra = [e for e in kb.errors if str(tmp_path) in str(e)]
    return kb, extra


def test_good_entry_loads_with_all_fields(tmp_path: Path, playbook_dir: Path) -> None:
    write_entry(tmp_path / "kb", "widget-hot.md", GOOD_ENTRY.format(id="widget-hot"))
    kb, errors = _load(tmp_path, playbook_dir)
    assert errors == []
    entry = kb.get("widget-hot")
    assert entry.category == "gpu_hardware_xid" and entry.playbook == "gpu-health"
    assert [p.weight for p in entry.patterns] == [9.0, 2.0]
    assert entry.patterns[0].regex.search("ALERT widget temperature critical now")
    assert entry.fix_summary == "Cool it: `widgetctl cool`."


@pytest.mark.parametrize(
    ("mutation", "line", "words"),
    [
        (("  - {regex: 'widget temperature critical', weight: 9}", "  - {regex: 'widget (temperature', weight: 9}"), 7, "does not compile"),
        (("category: gpu_hardware_xid", "category: gpu_melted"), 4, "unknown category"),
        (("area: hardware", "area: kitchen"), 5, "unknown area"),
        (("playbook: gpu-health", "playbook: make-coffee"), 11, "playbook 'make-coffee' does not exist"),
        (("title: \"Widget overheated\"", "title: Widget: overheated: badly"), 3, "not valid YAML"),
        (("weight: 9}", "weight: 99}"), 7, "weight 99"),
        (("  - {regex: 'fan speed \\d+ rpm', weight: 2}", "  - {regex: '\\d+ \\w+', weight: 2}"), 8, "no literal text"),
        (("links: [https://example.org/widget]", "links: [https://example.org/widget]\nsource: me"), 13, "unknown field `source`"),
        # an unvalidated extra key hid a billion-laughs bomb that passed `kb check` (#12 item 8)
        (("weight: 9}", "weight: 9, note: hi}"), 7, "pattern #1 has an unknown key `note`"),
        (("links: [https://example.org/widget]", "links: &l [https://example.org/widget]\nexcludes: *l"), 12,
         "anchors and aliases"),
    ],
)
def test_bad_entry_is_reported_with_file_and_line_and_skipped(tmp_path, playbook_dir, mutation, line, words) -> None:
    old, new = mutation
    text = GOOD_ENTRY.format(id="widget-hot")
    assert old in text
    write_entry(tmp_path / "kb", "widget-hot.md", text.replace(old, new))
    write_entry(tmp_path / "kb", "widget-ok.md", GOOD_ENTRY.format(id="widget-ok"))
    kb, errors = _load(tmp_path, playbook_dir)
    assert len(errors) == 1, errors
    message = str(errors[0])
    assert f"widget-hot.md:{line}: " in message and words in message, message
    assert " — " in message  # every message says how to fix it
    assert "widget-hot" not in kb.entries and "widget-ok" in kb.entries


def test_missing_front_matter_and_missing_field(tmp_path: Path, playbook_dir: Path) -> None:
    write_entry(tmp_path / "kb", "plain.md", "# just markdown\n")
    write_entry(tmp_path / "kb", "no-title.md", GOOD_ENTRY.format(id="no-title").replace('title: "Widget overheated"\n', ""))
    _, errors = _load(tmp_path, playbook_dir)
    messages = sorted(str(e) for e in errors)
    assert any("no-title.md:2: missing field `title`" in m for m in messages), messages
    assert any("plain.md:1: no YAML front matter" in m for m in messages), messages


def test_duplicate_id_keeps_first_and_names_the_second_file(tmp_path: Path, playbook_dir: Path) -> None:
    write_entry(tmp_path / "kb", "a.md", GOOD_ENTRY.format(id="widget-hot"))
    write_entry(tmp_path / "kb", "b.md", GOOD_ENTRY.format(id="widget-hot"))
    kb, errors = _load(tmp_path, playbook_dir)
    assert len(errors) == 1 and "b.md:2: duplicate id 'widget-hot'" in str(errors[0])
    assert kb.get("widget-hot").path.name == "a.md"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path, playbook_dir: Path) -> None:
    """10^9 items if expanded (3 GB, 30 s per diagnose before): refused at its first alias."""
    text = GOOD_ENTRY.format(id="widget-hot").replace("links: [https://example.org/widget]",
                                                      "links: [https://example.org/widget]\n" + BOMB.replace("\n", "\n"))
    write_entry(tmp_path / "kb", "widget-hot.md", text)
    kb, errors = _load(tmp_path, playbook_dir)
    assert len(errors) == 1 and "anchors and aliases" in str(errors[0]) and "widget-hot" not in kb.entries


@pytest.mark.parametrize("make", [*BROKEN_KINDS, "huge file"])
def test_a_broken_file_in_an_extra_dir_is_skipped_with_a_warning(tmp_path: Path, playbook_dir: Path, make) -> None:
    """A dangling symlink, a directory or a loop named *.md ended `diagnose` and `kb check` in a traceback."""
    kb_dir = tmp_path / "kb"
    write_entry(kb_dir, "widget-ok.md", GOOD_ENTRY.format(id="widget-ok"))
    broken = kb_dir / "broken.md"
    if make in BROKEN_KINDS:
        make_broken(broken, make)
    else:
        broken.write_text("---\nid: x\n---\n" + "x" * (2 << 20))
    kb, errors = _load(tmp_path, playbook_dir)
    assert "widget-ok" in kb.entries
    assert len(errors) == 1 and "broken.md" in str(errors[0]), errors


def test_broken_files_do_not_break_the_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    from opsconsole.cli import main

    kb_dir, pb_dir = tmp_path / "kb", tmp_path / "opsconsole" / "playbooks"
    kb_dir.mkdir()
    pb_dir.mkdir(parents=True)
    (kb_dir / "dangling.md").symlink_to(tmp_path / "gone.md")
    (pb_dir / "loop.yaml").symlink_to(pb_dir / "loop.yaml")
    (pb_dir / "dir.yaml").mkdir()
    (pb_dir / "bomb.yaml").write_text(BOMB)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "opsconsole" / "config.toml").write_text(f"extra_kb_dirs = [{str(kb_dir)!r}]\n")
    log = tmp_path / "run.log"
    log.write_text("RuntimeError: CUDA error: no kernel image is available for execution on the device\n")
    assert main(["diagnose", str(log), "--json"]) == 0
    assert main(["kb", "check"]) != 0
    err = capsys.readouterr().err
    assert "dangling.md" in err and "Traceback" not in err
    assert main(["playbook", "list"]) in (0, 1)
    captured = capsys.readouterr()
    assert all(name in captured.out + captured.err for name in ("loop.yaml", "dir.yaml", "bomb.yaml"))


def test_missing_extra_dir_is_an_error_not_a_crash(tmp_path: Path, playbook_dir: Path) -> None:
    kb = load_kb(extra_dirs=[tmp_path / "nope"], playbook_dirs=[playbook_dir])
    assert any(isinstance(e, ConfigError) and "does not exist" in str(e) for e in kb.errors)


# -- the bundled KB -------------------------------------------------------------

BUNDLED = load_kb()

REQUIRED_IDS = """gpu-thermal-throttle gpu-power-throttle gpu-hw-slowdown gpu-ecc-errors gpu-row-remap
gpu-pcie-link-degraded gpu-xid-errors gpu-fallen-off-bus illegal-memory-access cuda-oom-batch-too-large
cuda-oom-other-process cuda-oom-fragmentation cuda-oom-sdxl-vae-decode driver-library-mismatch no-nvidia-driver
torch-cpu-only no-kernel-image cuda-driver-too-old cuda-not-visible nan-fp16-overflow nan-lr-too-high
sd-black-images-vae-fp16 model-offline-not-cached gated-model""".split()


def test_bundled_kb_loads_without_errors_and_covers_every_label() -> None:
    assert BUNDLED.errors == []
    assert len(BUNDLED) >= 35
    assert {e.category for e in BUNDLED.entries.values()} == set(CATEGORIES)
    assert set(REQUIRED_IDS) <= set(BUNDLED.entries)
    for label in ("cuda_oom", "nan_inf", "version_incompat"):
        assert len(BUNDLED.by_category(label)) >= 3, label


def test_bundled_playbook_references_resolve() -> None:
    known = playbook_ids([bundled_dir("playbooks")])
    if not known:
        pytest.skip("no playbooks bundled yet")
    missing = {e.id: e.playbook for e in BUNDLED.entries.values() if e.playbook not in known}
    assert not missing


def test_bundled_entries_have_causes_fixes_and_links() -> None:
    for entry in BUNDLED.entries.values():
        assert entry.section("What it means"), entry.id
        assert entry.section("Causes"), entry.id
        assert entry.fix_summary, entry.id
        assert entry.links and all(link.startswith("https://") for link in entry.links), entry.id


def test_extra_entry_may_use_a_playbook_from_the_users_config_dir(tmp_path: Path) -> None:
    from opsconsole.paths import config_dir

    own = config_dir() / "playbooks"
    own.mkdir(parents=True)
    (own / "my-checks.yaml").write_text("id: my-checks\ntitle: mine\nsteps: []\n")
    text = GOOD_ENTRY.format(id="widget-hot").replace("playbook: gpu-health", "playbook: my-checks")
    write_entry(tmp_path / "kb", "widget-hot.md", text)
    kb = load_kb(extra_dirs=[tmp_path / "kb"])
    assert kb.get("widget-hot") is not None and kb.errors == []


def test_unknown_telemetry_finding_is_reported(tmp_path: Path, playbook_dir: Path) -> None:
    text = GOOD_ENTRY.format(id="widget-hot").replace("telemetry: [thermal_throttle]", "telemetry: [thermal_throttle, too_hot]")
    write_entry(tmp_path / "kb", "widget-hot.md", text)
    _, errors = _load(tmp_path, playbook_dir)
    assert len(errors) == 1 and "widget-hot.md:10: unknown telemetry finding 'too_hot'" in str(errors[0])


def test_every_kb_id_the_telemetry_layer_suggests_exists() -> None:
    import yaml

    from opsconsole.telemetry.findings import FINDING_KB

    referenced = {kb for kb in FINDING_KB.values() if kb} | {"cuda-not-visible"}
    xid_table = Path(__file__).resolve().parents[2] / "opsconsole" / "telemetry" / "data" / "xid.yaml"
    if xid_table.is_file():
        table = yaml.safe_load(xid_table.read_text())
        rows = [table.get("default") or {}] + list((table.get("xids") or {}).values())
        referenced |= {row["kb"] for row in rows if isinstance(row, dict) and row.get("kb")}
        assert "illegal-memory-access" in referenced  # the table was really read
    assert referenced - set(BUNDLED.entries) == set()
