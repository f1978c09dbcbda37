"""Run every benchmark module in bench/ (or those named on the command line).

A benchmark that fails is reported and the others still run; the exit status says
whether all of them finished.
"""
import importlib
import pkgutil
import sys
import traceback

import bench


def main(names: list[str]) -> int:
    modules = names or sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    failed = []
    for name in modules:
        print(f"\n=== {name} ===", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


raise SystemExit(main(sys.argv[1:]))
