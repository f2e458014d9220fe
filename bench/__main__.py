"""``python -m bench [name ...]``: run every ``bench/<name>.py`` (or the ones named), print one table of
all their figures and write ``bench/results/all.json``.

Each module's ``main([])`` prints its own table and writes ``bench/results/<name>.json``; a module
that fails is reported in the table (and the JSON) and the others still run.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Sequence

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def modules() -> list[str]:
    """Benchmark module names: every bench/*.py but the package's own files."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, scalar) for every leaf of a nested result; an empty list or dict is a leaf (shown as
    ``[]`` / ``{}``: "no tables changed" must show, not vanish)."""
    if isinstance(value, (dict, list, tuple)) and not value:
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def run(names: Sequence[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        started = time.monotonic()
        try:
            results[name] = importlib.import_module(f"bench.{name}").main([])
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name] = {"bench_seconds": round(time.monotonic() - started, 1), **(results[name] or {})}
    return results


def table(results: dict[str, Any]) -> str:
    rows = [(name, path, value) for name, result in results.items() for path, value in flatten(result)]
    width = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(("bench", "figure", "value"))]
    line = "  ".join("{:<%d}" % w for w in width)
    out = [line.format("bench", "figure", "value"), line.format(*("-" * w for w in width))]
    out += [line.format(name, path, f"{value:.4g}" if isinstance(value, float) else str(value)) for name, path, value in rows]
    return "\n".join(out) + "\n"


def publish(name: str, args: Any, results: dict[str, Any]) -> dict[str, Any]:
    """Print a benchmark's table of ``results`` and write them with its arguments (an argparse namespace) to
    ``bench/results/<name>.json``; returns them."""
    print(table(results))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2) + "\n")
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = list(sys.argv[1:] if argv is None else argv)
    known = modules()
    unknown = [a for a in args if a not in known]
    if unknown:
        sys.stderr.write(f"bench: error: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}\n")
        raise SystemExit(2)
    results = run(args or known)
    sys.stdout.write("\n" + table(results))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "all.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
