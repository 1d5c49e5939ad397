"""Input faults: malformed KB / playbook files, huge, binary and ANSI-flooded logs, and fuzzing of the loaders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsconsole.errors import ConfigError
from opsconsole.kb import LogMatcher, load_kb, match_log
from opsconsole.kb.loader import parse_entry
from opsconsole.paths import bundled_dir
from opsconsole.playbooks.loader import load_playbook_file

from faults_helpers import opsconsole

MAX_RSS_MB = 250
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _config(extra: dict[str, list[str]]) -> None:
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "opsconsole" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in extra.items()))


def test_malformed_kb_entry_names_file_and_line_and_the_rest_loads(tmp_path: Path) -> None:
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    good = (bundled_dir("kb") / "gated-model.md").read_text().replace("id: gated-model", "id: site-gated-model")
    (kb_dir / "site-gated-model.md").write_text(good)
    broken = good.replace("id: site-gated-model", "id: broken").replace(
        "patterns:\n", "patterns:\n  - {regex: '([unclosed', weight: 3}\n", 1)
    (kb_dir / "broken.md").write_text(broken)
    bad_line = broken.splitlines().index("  - {regex: '([unclosed', weight: 3}") + 1
    _config({"extra_kb_dirs": [str(kb_dir)]})
    check = opsconsole("kb", "check")
    assert check.returncode == 3
    assert f"broken.md:{bad_line}" in check.stdout + check.stderr  # file:line of the bad regex
    listed = opsconsole("kb", "list", "--json")
    ids = {e["id"] for e in json.loads(listed.stdout)["entries"]} if listed.stdout.startswith("{") else \
        {e["id"] for e in json.loads(listed.stdout)}
    assert "site-gated-model" in ids and "gated-model" in ids and "broken" not in ids
    log = tmp_path / "oom.log"
    log.write_text("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    assert "cuda-oom" in opsconsole("diagnose", str(log)).stdout


def test_malformed_playbook_names_file_and_line_and_the_rest_loads(tmp_path: Path) -> None:
    trusted = tmp_path / "playbooks"
    trusted.mkdir()
    good = (bundled_dir("playbooks") / "disk-space.yaml").read_text().replace("id: disk-space", "id: site-disk")
    (trusted / "site-disk.yaml").write_text(good)
    (trusted / "bad-yaml.yaml").write_text("id: bad-yaml\ntitle: Bad\nsteps:\n  - id: a\n    check: [unclosed\n")
    (trusted / "bad-check.yaml").write_text("id: bad-check\ntitle: Bad check\nsteps:\n  - id: a\n    title: A\n"
                                            "    check: no_such_check\n")
    _config({"trusted_playbook_dirs": [str(trusted)]})
    listed = opsconsole("playbook", "list")
    text = listed.stdout + listed.stderr
    assert "bad-yaml.yaml:5" in text or "bad-yaml.yaml:6" in text, text
    assert "bad-check.yaml:6" in text, text
    assert "site-disk" in text and "cuda-oom" in text and "Traceback" not in text
    shown = opsconsole("playbook", "show", "site-disk")
    assert shown.returncode == 0


# Peak RSS is read from /proc/self/status (VmHWM) inside the diagnose process at exit: the
# rusage of a child started by vfork also counts the parent's (pytest's) memory before exec.
_DIAGNOSE_WITH_HWM = (
    "import atexit, sys\n"
    "def hwm():\n"
    "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "    sys.stderr.write('HWM_KB ' + line.split()[1] + '\\n')\n"
    "atexit.register(hwm)\n"
    "from opsconsole.cli import main\n"
    "sys.exit(main(['diagnose', sys.argv[1], '--json']))\n")


def _diagnose_peak_rss_mb(source: Path | None, producer: list[str] | None = None) -> tuple[int, float, str]:
    """Run `diagnose` on a file (or a generator piped to stdin); return (exit, peak RSS MiB, stdout)."""
    feeder = subprocess.Popen(producer, stdout=subprocess.PIPE) if producer else None
    proc = subprocess.Popen([sys.executable, "-c", _DIAGNOSE_WITH_HWM, str(source) if source else "-"],
                            stdin=feeder.stdout if feeder else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    if feeder:
        feeder.stdout.close()
    out, err = proc.communicate(timeout=120)
    if feeder:
        feeder.wait(timeout=30)
    hwm = [int(line.split()[1]) for line in err.decode().splitlines() if line.startswith("HWM_KB ")]
    assert hwm, err.decode()[-2000:]
    return proc.returncode, hwm[0] / 1024, out.decode()


def test_one_gigabyte_binary_log_is_read_in_bounded_memory(tmp_path: Path) -> None:
    huge = tmp_path / "core.bin"
    with open(huge, "wb") as fh:  # sparse: 1 GiB of NUL bytes, no newline at all, no disk used
        fh.truncate(1 << 30)
        fh.seek(-64, os.SEEK_END)
        fh.write(b"\nRuntimeError: CUDA error: out of memory\n")
    code, rss, out = _diagnose_peak_rss_mb(huge)
    assert code in (0, 1) and rss < MAX_RSS_MB, (code, rss)
    assert json.loads(out)["lines_scanned"] >= 1


def test_ansi_flood_and_random_bytes_from_a_pipe_stay_bounded() -> None:
    flood = ("import sys, os\nline = b'\\x1b[31m\\x1b[1mstep 12/100 loss=0.5\\x1b[0m\\r\\x1b[2K' * 40 + b'\\n'\n"
             "for i in range(60000):\n    sys.stdout.buffer.write(line)\n"
             "    if i % 1000 == 0: sys.stdout.buffer.write(os.urandom(4096))\n"
             "sys.stdout.buffer.write(b'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\\n')\n")
    code, rss, out = _diagnose_peak_rss_mb(None, [sys.executable, "-c", flood])
    assert code == 0 and rss < MAX_RSS_MB, (code, rss)
    assert json.loads(out)["matches"][0]["id"].startswith("cuda-oom")


# --- fuzzing: a loader either loads or raises ConfigError(file:line); the matcher never raises ----------

yaml_like = st.lists(st.sampled_from(list("abc:-[]{}'\"#&*!|>%@`\n\t ,?=09") + ["id: ", "steps:", "  - ", "check: ",
                                                                         "---\n", "\x00", "title: "]),
                     max_size=80).map("".join)


@FUZZ
@given(text=st.one_of(yaml_like, st.text(max_size=300)))
def test_fuzz_kb_entry_loader(text: str, tmp_path: Path) -> None:
    for candidate in (text, f"---\n{text}\n---\nbody\n", f"---\nid: x\ntitle: t\n{text}\n---\n"):
        try:
            parse_entry(tmp_path / "fuzz.md", candidate)
        except ConfigError as exc:
            assert "fuzz.md" in str(exc)


@FUZZ
@given(text=st.one_of(yaml_like, st.text(max_size=300)))
def test_fuzz_playbook_loader(text: str, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    for candidate in (text, f"id: fuzz\ntitle: t\nsteps:\n{text}\n"):
        path.write_text(candidate, encoding="utf-8", errors="surrogatepass")
        try:
            load_playbook_file(path, trusted=False)
        except ConfigError as exc:
            assert "fuzz.yaml" in str(exc)


KB = load_kb()


@FUZZ
@given(chunks=st.lists(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                                 st.sampled_from(["CUDA out of memory", "\r", "\x1b[2K", "\n", "Xid 79", "NCCL"])),
                       max_size=30))
def test_fuzz_log_matcher(chunks: list[str]) -> None:
    matcher = LogMatcher(KB)
    for chunk in chunks:
        matcher.feed(chunk)
    incremental = matcher.result(top=3)
    whole = match_log("".join(chunks), kb=KB, top=3)
    assert [m.id for m in incremental.matches] == [m.id for m in whole.matches]
