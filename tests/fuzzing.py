"""Property-based fuzzing of the decoders we own (hypothesis), with the number of cases counted.

``fuzz(name, strategy, check, max_examples)`` runs ``check`` on examples drawn from
``strategy``, prints ``fuzz NAME: N cases`` and keeps the count in :data:`COUNTS`, which
``conftest.py`` prints in the terminal summary of the run.
"""
from __future__ import annotations

from typing import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

COUNTS: dict[str, int] = {}


def fuzz(name: str, strategy: st.SearchStrategy, check: Callable[[object], None], max_examples: int) -> int:
    """Run ``check`` on up to ``max_examples`` examples (no deadline, no example database); the count run."""
    count = 0

    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(strategy)
    def run(value) -> None:
        nonlocal count
        count += 1
        check(value)

    run()
    COUNTS[name] = COUNTS.get(name, 0) + count
    print(f"fuzz {name}: {count} cases")
    return count
