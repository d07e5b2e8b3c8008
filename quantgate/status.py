"""The words a result set uses: a case's status, and a test's outcome. Stored as their plain string
values in results.json (a StrEnum compares equal to its value), read back by compare and the report."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """How a case ended."""

    NOT_RUN = "not run"
    OK = "ok"
    FAILED = "failed"
    CRASHED = "crashed"
    TIMED_OUT = "timed out"
    OUT_OF_MEMORY = "out of memory"
    IMPORT_FAILED = "import failed"
    DOES_NOT_FIT = "does not fit"
    KNOWN_FAILURE = "known failure"


# a case that ended as its expectations say it should: it ran, it reproduced its known failure, or
# it was skipped because the GPU is too small for it
AS_EXPECTED = (Status.OK, Status.KNOWN_FAILURE, Status.DOES_NOT_FIT)


class Outcome(StrEnum):
    """A test's outcome, as pytest reports it (an error: it failed outside its call)."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    XFAILED = "xfailed"
    ERROR = "error"


PASSING = (Outcome.PASSED, Outcome.XFAILED, Outcome.SKIPPED)
NOT_PASSING = (Outcome.FAILED, Outcome.ERROR)
