"""RunStore: the SQLite registry of runs (`$XDG_STATE_HOME/opsconsole/runs.sqlite3`).

The run directories are the source of truth; the registry is an index over
them that the console and every supervisor update. A corrupt database is moved
aside (never deleted) and rebuilt from the run directories; `recovery_note`
says what happened so the caller can tell the user.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..paths import ensure_private_dir, state_dir
from ..records import is_number
from .rundir import RunDir, runs_root

DB_NAME = "runs.sqlite3"
ACTIVE_STATUSES = ("starting", "running")
FINAL_STATUSES = ("ok", "failed", "crashed", "stopped")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    exit_code INTEGER,
    signal INTEGER,
    device TEXT,
    gpus TEXT NOT NULL DEFAULT '[]',
    pid INTEGER,
    pid_started REAL,
    supervisor_pid INTEGER,
    supervisor_started REAL,
    python TEXT,
    metrics TEXT NOT NULL DEFAULT '{}',
    dir TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
"""
_JSON_COLUMNS = ("params", "gpus", "metrics")


@dataclass
class RunRecord:
    """One row of the registry (what `runs list` shows)."""

    id: str
    kind: str
    status: str
    dir: str
    started_at: float
    params: list[str] = field(default_factory=list)
    ended_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    device: str | None = None
    gpus: list[str] = field(default_factory=list)
    pid: int | None = None
    pid_started: float | None = None
    supervisor_pid: int | None = None
    supervisor_started: float | None = None
    python: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def run_dir(self) -> RunDir:
        return RunDir(self.dir)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_NUMBER_COLUMNS = ("started_at", "ended_at", "pid_started", "supervisor_started")
_INT_COLUMNS = ("exit_code", "signal", "pid", "supervisor_pid")


def _row_to_record(row: sqlite3.Row) -> RunRecord:
    """A registry row with its types checked: a hand-edited `started_at = 'abc'` or metrics
    `[1]` reads as unknown (None, {}), never as a traceback in `runs list/show` or `report`."""
    values = dict(row)
    for key in _JSON_COLUMNS:
        try:
            values[key] = json.loads(values[key] or "null") or ({} if key == "metrics" else [])
        except (ValueError, TypeError):
            values[key] = {} if key == "metrics" else []
        if not isinstance(values[key], dict if key == "metrics" else list):
            values[key] = {} if key == "metrics" else []
    for key in _NUMBER_COLUMNS:
        if not is_number(values.get(key)):
            values[key] = 0.0 if key == "started_at" else None
    for key in _INT_COLUMNS:
        if not isinstance(values.get(key), int) or isinstance(values.get(key), bool):
            values[key] = None
    for key in ("id", "kind", "status", "dir"):
        values[key] = str(values.get(key) or "")
    return RunRecord(**values)


class RunStore:
    """SQLite registry of runs. One short connection per operation (thread- and fork-safe)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = ensure_private_dir(root or state_dir())
        self.path = self.root / DB_NAME
        self.runs_dir = runs_root() if root is None else self.root / "runs"
        self.recovery_note: str | None = None
        self._open_checked()

    # --- connection -------------------------------------------------------------------
    def _raw_connect(self) -> sqlite3.Connection:
        new = not self.path.exists()
        conn = sqlite3.connect(self.path, timeout=15.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 15000")
        if new:
            os.chmod(self.path, 0o600)
        return conn

    def _open_checked(self) -> None:
        missing = not self.path.exists()
        try:
            with closing(self._raw_connect()) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {check}")
                conn.executescript(_SCHEMA)
                self._check_columns(conn)
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return
        if missing and self.runs_dir.is_dir() and any(self.runs_dir.iterdir()):
            count = self.rebuild()  # the registry file was deleted: the run dirs still tell everything
            self.recovery_note = f"run registry {self.path} was missing; rebuilt from {count} run dir(s)"

    @staticmethod
    def _check_columns(conn: sqlite3.Connection) -> None:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        missing = {f for f in RunRecord.__dataclass_fields__} - columns
        if missing:
            raise sqlite3.DatabaseError(f"registry lacks columns {sorted(missing)}")

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._raw_connect()
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            conn = self._raw_connect()
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.IntegrityError) or "locked" in str(exc):
                raise
            conn.close()
            self._recover(exc)
            raise UsageError(f"run registry {self.path} was damaged ({exc}); it was rebuilt — "
                             "run the command again") from None
        finally:
            conn.close()

    # --- recovery ---------------------------------------------------------------------
    def _disk_full(self, exc: BaseException) -> bool:
        """SQLite's "disk is full" / "disk I/O error" on a full file system is not damage."""
        text = str(exc).lower()
        if "disk is full" in text or "no space" in text:
            return True
        try:
            return "disk i/o error" in text and shutil.disk_usage(self.root).free < (1 << 20)
        except OSError:
            return False

    def _recover(self, exc: BaseException) -> None:
        """Move the damaged database aside and rebuild it from the run directories."""
        if self._disk_full(exc):  # nothing is damaged: moving the registry aside would not help
            raise UsageError(f"the disk holding the run registry {self.path} is full ({exc}); free space there "
                             f"(`df -h {self.root}`) and run the command again; no run was lost") from None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = self.path.with_name(f"{DB_NAME}.corrupt-{stamp}")
        for n in range(2, 10_000):  # two damaged registries in one second: keep both copies
            if not any(Path(f"{moved}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
                break
            moved = self.path.with_name(f"{DB_NAME}.corrupt-{stamp}-{n}")
        try:
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    os.replace(src, Path(f"{moved}{suffix}"))
            with closing(self._raw_connect()) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
            count = self.rebuild()
        except (OSError, sqlite3.Error) as again:
            raise UsageError(f"run registry {self.path} is damaged ({exc}) and could not be rebuilt ({again}); "
                             f"move it aside and retry") from None
        self.recovery_note = (f"run registry {self.path} was damaged ({exc}); moved to {moved.name} and "
                              f"rebuilt from {count} run dir(s) in {self.runs_dir}")

    def rebuild(self) -> int:
        """Insert every run directory that is missing from the registry; return how many."""
        from .records import record_from_run_dir  # late: records imports this module

        count = 0
        if not self.runs_dir.is_dir():
            return 0
        for path in sorted(self.runs_dir.iterdir()):
            if not path.is_dir():
                continue
            record = record_from_run_dir(RunDir(path))
            if record is not None:
                self.insert(record, replace=True)
                count += 1
        return count

    # --- operations -------------------------------------------------------------------
    def insert(self, record: RunRecord, replace: bool = False) -> None:
        values = record.to_dict()
        for key in _JSON_COLUMNS:
            values[key] = json.dumps(values[key], default=str)
        cols = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self._conn() as conn:
            conn.execute(f"{verb} INTO runs ({cols}) VALUES ({marks})", values)

    def insert_if_free(self, record: RunRecord, conflicts: Any) -> list[RunRecord]:
        """Insert `record` unless `conflicts(active_records)` names some; atomically.

        Returns the conflicting records (empty list: inserted). BEGIN IMMEDIATE
        makes the check and the insert one step for concurrent launchers.
        """
        values = record.to_dict()
        for key in _JSON_COLUMNS:
            values[key] = json.dumps(values[key], default=str)
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute(
                    f"SELECT * FROM runs WHERE status IN ({','.join('?' * len(ACTIVE_STATUSES))})",
                    ACTIVE_STATUSES).fetchall()
                found = conflicts([_row_to_record(r) for r in rows])
                if found:
                    conn.execute("ROLLBACK")
                    return list(found)
                cols = ", ".join(values)
                conn.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join(f':{k}' for k in values)})", values)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return []

    def update(self, run_id: str, **fields: Any) -> None:
        if not fields:
            return
        for key in _JSON_COLUMNS:
            if key in fields:
                fields[key] = json.dumps(fields[key], default=str)
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        with self._conn() as conn:
            conn.execute(f"UPDATE runs SET {sets} WHERE id = :_id", {**fields, "_id": run_id})

    def update_if_active(self, run_id: str, **fields: Any) -> bool:
        """Update only while the run is starting/running (a final status is never overwritten)."""
        for key in _JSON_COLUMNS:
            if key in fields:
                fields[key] = json.dumps(fields[key], default=str)
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        with self._conn() as conn:
            cur = conn.execute(f"UPDATE runs SET {sets} WHERE id = :_id AND status IN ('starting', 'running')",
                               {**fields, "_id": run_id})
            return cur.rowcount > 0

    def get(self, run_id: str) -> RunRecord | None:
        try:
            run_id.encode("utf-8")
        except UnicodeEncodeError:  # undecodable argv bytes: no run id has them (sqlite would raise)
            return None
        with self._conn() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _row_to_record(row) if row else None

    def list(self, active_only: bool = False) -> list[RunRecord]:
        query = "SELECT * FROM runs"
        if active_only:
            query += " WHERE status IN ('starting', 'running')"
        with self._conn() as conn:
            rows = conn.execute(query + " ORDER BY id DESC").fetchall()
        return [_row_to_record(r) for r in rows]

    def ids(self) -> list[str]:
        with self._conn() as conn:
            return [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id DESC")]

    def delete(self, run_id: str) -> None:
        with self._conn() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
