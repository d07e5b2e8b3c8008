"""Out-of-memory messages name what was asked for in a unit that shows it."""

from quantgate.case.limits import asked_bytes, describe_out_of_memory

# the message torch 2.11 raised on the H100 for a case capped at memory_limit_gib = 0.01
# (results/cuda-oom-check-cuda-sm90.md)
H100_MESSAGE = ("CUDA out of memory. Tried to allocate 2.00 MiB. GPU 0 has a total capacity of 79.18 GiB of "
                "which 78.65 GiB is free. Including non-PyTorch memory, this process has 528.00 MiB memory in "
                "use. 10.24 MiB allowed; Of the allocated memory 9.96 MiB is allocated by PyTorch")


def test_the_size_asked_for_is_read_from_a_cuda_message():
    assert asked_bytes(H100_MESSAGE) == 2 * 2**20


def test_a_small_request_reads_in_mib_not_as_zero_gib():
    text = describe_out_of_memory(MemoryError(H100_MESSAGE), "cpu", limit_bytes=int(0.01 * 2**30))
    assert "asked for 2.00 MiB" in text
    assert "limit 10.24 MiB (memory_limit_gib)" in text


def test_a_large_request_reads_in_gib():
    text = describe_out_of_memory(MemoryError("Tried to allocate 3.50 GiB."), "cpu", limit_bytes=8 * 2**30)
    assert "asked for 3.50 GiB" in text and "limit 8.00 GiB" in text
