"""Where a case's process comes from."""

from quantgate.isolation import _context


def test_cuda_cases_are_spawned_and_cpu_cases_forked_from_a_warm_server():
    # a process forked after CUDA was initialised cannot use CUDA; the fork server's imports can
    # initialise it (seen on an H100), so CUDA cases get fresh interpreters
    assert _context("cuda").get_start_method() == "spawn"
    assert _context("cpu").get_start_method() == "forkserver"
