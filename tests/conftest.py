"""Shared fixtures: the real Pittsburgh data, when the shared folder is beside the repo."""
from __future__ import annotations

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PITTSBURGH = REPO.parent / "shared" / "data" / "pittsburgh-2018"
# Development subset only; FP4-FP9 are held out and must never be read.
DEV_POSITIONS = ("FP1", "FP2", "FP3")


def pittsburgh_tests() -> list[pathlib.Path]:
    """Folders of the development tests (FP1-FP3), sorted; empty when the data is absent."""
    if not PITTSBURGH.is_dir():
        return []
    return sorted(d for fp in DEV_POSITIONS for d in (PITTSBURGH / fp).glob("test_*") if d.is_dir())


@pytest.fixture(scope="session")
def pittsburgh() -> list[pathlib.Path]:
    tests = pittsburgh_tests()
    if not tests:
        pytest.skip(f"real data absent: {PITTSBURGH} (clone the repo beside ../shared to run this)")
    return tests


@pytest.fixture
def mosquitto(tmp_path):
    """A real mosquitto on a free 127.0.0.1 port, persistent (a restart keeps sessions and queued
    QoS 1 messages), stopped after the test (see simulator/broker.py)."""
    from simulator.broker import Mosquitto

    broker = Mosquitto(tmp_path / "mosquitto", persistence=True).start()
    yield broker
    broker.stop()


def pytest_collection_modifyitems(config, items):
    """A test that asks for the broker is an integration test (`make test-fast` leaves it out):
    its mark must say so where it is written."""
    unmarked = [item.nodeid for item in items
                if "mosquitto" in getattr(item, "fixturenames", ()) and item.get_closest_marker("integration") is None]
    if unmarked:
        raise pytest.UsageError("tests that use the mosquitto fixture must be marked integration: " + ", ".join(unmarked))


def pytest_terminal_summary(terminalreporter):
    """The number of cases each fuzz test ran (tests/fuzzing.py), when any ran."""
    from fuzzing import COUNTS

    if COUNTS:
        terminalreporter.section("fuzz cases")
        for name, count in sorted(COUNTS.items()):
            terminalreporter.write_line(f"{name}: {count}")
        terminalreporter.write_line(f"total: {sum(COUNTS.values())}")


@pytest.fixture(autouse=True)
def _fusion_log_level_restored():
    """A test that quiets the ``fusion`` logger must not silence the warnings a later test checks."""
    import logging

    logger = logging.getLogger("fusion")
    level = logger.level
    yield
    logger.setLevel(level)
