"""Where a case's process comes from."""

import os

import pytest

from quantgate.case import isolation
from quantgate.case.isolation import _context, open_case
from quantgate.matrix import build_cases, load_matrix, load_models

from .conftest import REPO


def test_cases_are_forked_from_a_warm_server_that_has_not_touched_cuda(monkeypatch):
    monkeypatch.setattr(isolation, "_spawn_cuda_cases", False)
    assert _context("cpu").get_start_method() == "forkserver"
    assert _context("cuda").get_start_method() == "forkserver"
    # torch.cuda.is_available() in the server would initialise the driver and break forked children
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"


UNFORKABLE = '''
import os
from quantgate.case.session import CaseSession

class FailsWhenForked(CaseSession):
    """Stands in for a stack that initialised CUDA in the fork server: a forked process cannot start."""
    def __init__(self, case, model_dir, cache_root):
        if os.getppid() != int(os.environ["QG_TEST_PARENT_PID"]):
            raise RuntimeError("Cannot re-initialize CUDA in forked subprocess. (planted)")
        self.case = case
'''


@pytest.fixture
def cuda_case():
    fixtures = REPO / "fixtures"
    models = load_models(fixtures)
    return next(c for c in build_cases(models, load_matrix(fixtures, models)) if c.device == "cuda")


def test_a_cuda_case_that_cannot_start_forked_is_started_in_a_fresh_interpreter(
        cuda_case, tmp_path, monkeypatch):
    (tmp_path / "unforkable_sessions.py").write_text(UNFORKABLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("QG_TEST_PARENT_PID", str(os.getpid()))
    monkeypatch.setattr(isolation, "_spawn_cuda_cases", False)
    monkeypatch.setattr(isolation, "_fork_server", None)
    with pytest.warns(RuntimeWarning, match="could not start .*Cannot re-initialize CUDA.*fresh interpreter"):
        handle = open_case(cuda_case, tmp_path, tmp_path, "process", "unforkable_sessions:FailsWhenForked")
    try:
        assert handle.start_method == "spawn" and handle.call("ping") == "pong"
    finally:
        handle.close()
    assert _context("cuda").get_start_method() == "spawn"      # the rest of the session is spawned
    assert _context("cpu").get_start_method() == "forkserver"  # CPU cases keep the fork server
