"""A CUDA case that cannot fit in the free GPU memory is skipped with the numbers, not crashed."""

import pytest
import torch

from quantgate.case.session import CaseSession
from quantgate.errors import DoesNotFit
from quantgate.matrix import build_cases, load_matrix, load_models

from .conftest import REPO

GiB = 2**30


@pytest.fixture
def cuda_session(monkeypatch):
    fixtures = REPO / "fixtures"
    models = load_models(fixtures)
    case = next(c for c in build_cases(models, load_matrix(fixtures, models))
                if c.device == "cuda" and c.model.name == "flux-dev-synth" and c.config.is_reference)
    session = CaseSession.__new__(CaseSession)     # no CUDA here: only the check is exercised
    session.case = case
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (20 * GiB, 80 * GiB))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU 80GB")
    return session


def test_a_case_needing_more_than_is_free_is_refused_with_needed_free_and_total(cuda_session):
    with pytest.raises(DoesNotFit, match=r"flux-dev-synth-bf16-cuda does not fit: it needs 36.17 GiB .*"
                                         r"20.00 GiB of 80.00 GiB are free on Test GPU 80GB"):
        cuda_session.check_fits(int(36.17 * GiB))


def test_a_case_that_fits_or_has_no_measured_need_goes_ahead(cuda_session):
    cuda_session.check_fits(19 * GiB)
    cuda_session.check_fits(None)


DOES_NOT_FIT = '''
from quantgate.errors import DoesNotFit
from quantgate.case.session import CaseSession

class TooBig(CaseSession):
    def load(self, *args):
        if self.case.config.id == "quanto-int8":
            raise DoesNotFit(f"{self.case.id} does not fit: it needs 99.00 GiB (planted)")
        return super().load(*args)
'''


def test_a_case_that_does_not_fit_skips_its_tests_and_the_matrix_goes_on(run_gate, tmp_path):
    (tmp_path / "too_big_sessions.py").write_text(DOES_NOT_FIT)
    result = run_gate("--qg-config", "quanto-int8", "--qg-config", "torchao-int8wo", "-k", "test_backend_imports",
                      "--qg-case-session", "too_big_sessions:TooBig", env={"PYTHONPATH": str(tmp_path)})
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*tiny-flux-quanto-int8-cpu does not fit: it needs 99.00 GiB (planted)*"])
