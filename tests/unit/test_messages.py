"""Failure messages name the figures that failed, never two equal-looking numbers."""

from quantgate.units import distinct_digits


def test_a_ratio_just_over_its_ceiling_reads_differently_from_it():
    assert f"{3.7712:.{distinct_digits(3.7712, 3.7704)}f}" == "3.771"     # 2 decimals would read 3.77 and 3.77
    assert distinct_digits(1.94, 1.42) == 2
    assert distinct_digits(1.0000001, 1.0) == 6                          # the most it writes
