"""Shared helpers for quantgate's own tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GATE_TESTS = REPO / "tests" / "gate"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One model cache for every test of the session (tiny-flux builds in about a second)."""
    return tmp_path_factory.mktemp("qg-cache")


@pytest.fixture
def fixtures_copy(tmp_path) -> Path:
    """A private copy of the repository's fixtures, for tests that plant bad or changed data."""
    dst = tmp_path / "fixtures"
    shutil.copytree(REPO / "fixtures", dst)
    return dst


@pytest.fixture
def baselines_copy(tmp_path) -> Path:
    dst = tmp_path / "baselines"
    shutil.copytree(REPO / "baselines", dst)
    return dst


@pytest.fixture
def run_gate(pytester, shared_cache, tmp_path):
    """Run the gate's CPU tier in a subprocess against the given fixtures and baselines."""

    def run(*args, fixtures: Path | None = None, baselines: Path | None = None, env: dict | None = None):
        for key, value in (env or {}).items():
            pytester._monkeypatch.setenv(key, value)
        results = tmp_path / f"results-{len(list(tmp_path.glob('results-*')))}"
        run.results_dirs.append(results)
        return pytester.runpytest_subprocess(
            str(GATE_TESTS), "-p", "no:cacheprovider", "--benchmark-disable", "-m", "not gpu",
            "--qg-fixtures", str(fixtures or REPO / "fixtures"),
            "--qg-baselines", str(baselines or REPO / "baselines"),
            "--qg-cache-dir", str(shared_cache), "--qg-results-dir", str(results), *args)

    run.results_dirs = []
    return run
