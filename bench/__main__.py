"""Run every benchmark module in bench/ (or those named on the command line)."""
import importlib
import pkgutil
import sys

import bench


def main(names: list[str]) -> int:
    modules = names or sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    for name in modules:
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


raise SystemExit(main(sys.argv[1:]))
