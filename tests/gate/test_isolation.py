"""Each case leaves nothing behind for the next one.

Runs last of its case's tests: it closes the case's process, then checks that every process the
case started has ended and, on CUDA, that the GPU's used memory is back to what it was before the
case started (quantgate.case.leaks). A failure names the case that leaked and what it left.
"""

import pytest


@pytest.mark.qg_after_case
def test_case_leaves_nothing_behind(qg, qg_case):
    release = qg.release(qg_case)
    if release is None:
        pytest.skip(f"{qg_case.id} never started a process (see its other tests)")
    problems = release.problems()
    assert not problems, f"{qg_case.id} left something behind when it closed:\n  " + "\n  ".join(problems)

