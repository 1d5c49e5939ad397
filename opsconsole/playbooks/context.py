"""What checks read: one telemetry snapshot (sampled once, lazily), the environment,
the probe interpreter, the KB and the optional log file given with `--log`."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..telemetry.snapshot import GpuSnapshot, NvmlState, Snapshot

# Run in the probe interpreter (settings.python): import a module, report its version.
_MODULE_PROBE = r"""
import importlib, json, sys
name = sys.argv[1]
out = {"module": name}
try:
    mod = importlib.import_module(name)
    out["importable"] = True
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            from importlib import metadata
            version = metadata.version(name.split(".")[0].replace("_", "-"))
        except Exception:
            version = None
    out["version"] = None if version is None else str(version)
    out["file"] = getattr(mod, "__file__", None)
except BaseException as exc:
    out["importable"] = False
    out["error"] = f"{type(exc).__name__}: {exc}"[:500]
print(json.dumps(out))
"""


PROBE_WAIT_S = 60.0


@dataclass
class ModuleInfo:
    module: str
    importable: bool
    version: str | None = None
    error: str | None = None
    source: str = "probe"   # "probe" (subprocess) | "snapshot" (the telemetry env probe)


class PlaybookContext:
    """Everything a check may read. Build one per playbook run.

    `snapshot` may be given directly (tests, the TUI's latest sample); otherwise it
    is sampled once from telemetry (`--simulate` scenario or the real NVML).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        simulate: str | None = None,
        log_file: str | os.PathLike[str] | None = None,
        snapshot: Snapshot | None = None,
        environ: Mapping[str, str] | None = None,
        kb: Any = None,
        user: str | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.simulate = simulate
        self.log_file = Path(log_file) if log_file else None
        self._snapshot = snapshot
        self.environ = dict(os.environ if environ is None else environ)
        self._kb = kb
        self.user = user or _scenario_viewer(simulate) or _current_user()
        self._modules: dict[str, ModuleInfo] = {}
        # Wait for the CUDA env probe when sampling (the runner turns this off for playbooks
        # whose checks never read it, so they do not pay for importing torch in a subprocess).
        self.wait_for_probe = True

    # -- telemetry -----------------------------------------------------------------
    @property
    def simulated(self) -> bool:
        return bool(self.simulate) or (self._snapshot is not None and self._snapshot.source.startswith("simulated"))

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = _sample(self.settings, self.simulate, self.wait_for_probe)
        return self._snapshot

    def load(self) -> None:
        """Sample telemetry now (the CLI calls this first so a bad --simulate is a usage error)."""
        _ = self.snapshot

    @property
    def nvml(self) -> NvmlState:
        return self.snapshot.nvml

    def gpus(self, selector: Any = "all") -> list[GpuSnapshot]:
        gpus = list(self.snapshot.gpus)
        if selector == "all":
            return gpus
        return [g for g in gpus if g.index == selector]

    # -- environment ---------------------------------------------------------------
    def env_value(self, name: str) -> tuple[str | None, str]:
        """Value of an environment variable and where it was read.

        The CUDA env probe reports the variables of the ML interpreter's environment
        (and a simulated scenario its own); those win over the console's environment.
        """
        probed = dict(self.snapshot.cuda_env.env)
        if name in probed:
            return probed[name], "probe"
        return self.environ.get(name), "environment"

    def module_info(self, module: str) -> ModuleInfo:
        """Is `module` importable in the probe interpreter, and which version?"""
        if module not in self._modules:
            self._modules[module] = self._from_snapshot(module) or _probe_module(self.settings.python, module)
        return self._modules[module]

    def _from_snapshot(self, module: str) -> ModuleInfo | None:
        env = self.snapshot.cuda_env
        if module == "torch" and env.status in ("ok", "no_torch"):
            return ModuleInfo("torch", env.status == "ok", env.torch_version, None if env.status == "ok" else env.message, "snapshot")
        lib = env.library(module)
        if lib is None:
            return None
        return ModuleInfo(module, lib.error is None, lib.version, lib.error, "snapshot")

    # -- knowledge base ------------------------------------------------------------
    @property
    def kb(self) -> Any:
        if self._kb is None:
            self._kb = load_kb_or_none(self.settings)
        return self._kb


def _current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return str(os.getuid())


def _scenario_viewer(simulate: str | None) -> str | None:
    """The user a simulated scenario is seen by (its processes are "yours" when they are the viewer's)."""
    if not simulate:
        return None
    try:
        from ..telemetry.simulator import load_scenario

        return load_scenario(simulate).get("viewer")
    except Exception:  # unknown scenario: reported when the snapshot is sampled
        return None


_KB_CACHE: dict[tuple[Any, ...], Any] = {}


def _kb_signature(settings: Settings) -> tuple[Any, ...]:
    """Names, sizes and mtimes of the KB files: the cached KB is reused while they are unchanged."""
    from ..paths import bundled_dir

    files = []
    for directory in (bundled_dir("kb"), *map(Path, settings.extra_kb_dirs)):
        try:
            for path in sorted(Path(directory).expanduser().glob("*.md")):
                stat = path.stat()
                files.append((str(path), stat.st_size, stat.st_mtime_ns))
        except OSError:
            continue
    return tuple(settings.extra_kb_dirs), tuple(files)


def load_kb_or_none(settings: Settings) -> Any:
    """The knowledge base (cached while its files are unchanged), or None when it cannot be loaded."""
    try:
        from ..kb import load_kb  # type: ignore[attr-defined]
    except ImportError:
        return None
    key = _kb_signature(settings)
    if key not in _KB_CACHE:
        try:
            _KB_CACHE.clear()
            _KB_CACHE[key] = load_kb(extra_dirs=settings.extra_kb_dirs)
        except Exception:
            return None
    return _KB_CACHE[key]


def _sample(settings: Settings, simulate: str | None, wait_for_probe: bool) -> Snapshot:
    try:
        from ..telemetry import open_source  # type: ignore[attr-defined]
    except ImportError:
        if simulate:
            from ..errors import UsageError

            raise UsageError(f"--simulate {simulate}: the telemetry simulator is not available in this build") from None
        return Snapshot(time=time.time(), source="unavailable",
                        nvml=NvmlState(status="error", message="telemetry collectors are not available in this build"))
    source = open_source(simulate=simulate, python=settings.python, nvml_timeout=settings.nvml_timeout,
                         probe_env=wait_for_probe or bool(simulate))  # a scenario's env costs nothing
    try:
        if wait_for_probe or simulate:
            source.wait_cuda_env(timeout=PROBE_WAIT_S)
        return source.sample()
    finally:
        source.close()


def _probe_module(python: str, module: str, timeout: float = 60.0) -> ModuleInfo:
    try:
        proc = subprocess.run([python, "-c", _MODULE_PROBE, module], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        return ModuleInfo(module, bool(data["importable"]), data.get("version"), data.get("error"))
    except subprocess.TimeoutExpired:
        return ModuleInfo(module, False, error=f"importing {module} took longer than {timeout:.0f} s")
    except (OSError, ValueError, IndexError, KeyError) as exc:
        return ModuleInfo(module, False, error=f"could not run {python}: {exc}")
