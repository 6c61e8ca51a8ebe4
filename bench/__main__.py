"""`python -m bench [--quick] [names...]`: run every bench/bench_*.py, print, write results.json."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import traceback
from pathlib import Path

from bench._docs import render as render_docs
from bench._table import BenchRow

HERE = Path(__file__).resolve().parent
_ONLY_WHEN_NAMED = {"bench_city"}  # a quarter of an hour: issues a whole city's cards


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    parser.add_argument("only", nargs="*", help="bench module names, e.g. bench_verify")
    args = parser.parse_args()
    names = sorted(
        m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_")
    )
    if args.only:
        names = [n for n in names if n in args.only or n.removeprefix("bench_") in args.only]
    else:  # the long runs only when named (make bench-city)
        names = [n for n in names if n not in _ONLY_WHEN_NAMED]
    rows: list[BenchRow] = []
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            new_rows = module.run(quick=args.quick)
        except Exception:  # one broken benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
            continue
        for row in new_rows:
            print(
                f"  {row.name:<58} {row.value:>12.3f} {row.unit:<8}"
                f" | {row.floor_name:<40} {row.floor_value:>12.3f}  x{row.ratio}",
                flush=True,
            )
        rows.extend(new_rows)
    out = HERE / "results.json"
    previous: list[dict[str, object]] = []
    if args.only and out.exists():  # a partial run updates its own rows, keeps the rest
        previous = [r for r in json.loads(out.read_text()) if r["name"] not in
                    {row.name for row in rows}]
    out.write_text(json.dumps(previous + [r.as_dict() for r in rows], indent=2) + "\n")
    print(f"wrote {out} ({len(rows)} rows)")
    render_docs()
    print("wrote docs/BENCHMARKS.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
