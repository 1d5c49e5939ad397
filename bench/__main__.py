"""Run every benchmark and print one table: `python -m bench [--quick] [--json FILE] [--only NAME]`.

Each bench/bench_<name>.py exposes `run(quick: bool = False) -> list[dict]` whose rows are
{"name", "value", "unit", "baseline", "ratio", "goal"}; a script that fails is reported as
such and the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def discover() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs and shorter windows")
    parser.add_argument("--only", action="append", default=[], help="run only bench_<NAME> (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write all rows as JSON")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(BENCH_DIR.parent))
    names = [n for n in discover() if not args.only or n.removeprefix("bench_") in args.only or n in args.only]
    rows: list[dict] = []
    failures = 0
    for name in names:
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            for row in module.run(quick=args.quick):
                rows.append({"bench": name, **row})
        except Exception as exc:  # one broken bench must not hide the others
            failures += 1
            traceback.print_exc()
            rows.append({"bench": name, "name": "ERROR", "value": None, "unit": "", "goal": f"{type(exc).__name__}: {exc}"})
        print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)

    from rich.console import Console
    from rich.table import Table

    table = Table(title="opsconsole benchmarks" + (" (quick)" if args.quick else ""))
    for column in ("bench", "figure", "value", "unit", "baseline", "ratio", "goal"):
        table.add_column(column, justify="right" if column in ("value", "baseline", "ratio") else "left")
    for row in rows:
        table.add_row(row["bench"].removeprefix("bench_"), row.get("name", ""), _fmt(row.get("value")), row.get("unit", ""),
                      _fmt(row.get("baseline")), _fmt(row.get("ratio")), row.get("goal") or "")
    Console().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
