"""Exceptions that quantgate raises, each naming what is wrong and how to fix it."""

from __future__ import annotations


class QuantgateError(Exception):
    """Base class of every error quantgate raises on purpose."""


class DataFileError(QuantgateError):
    """A matrix, model or expectations file is malformed.

    The message names the file, the entry and the field.
    """

    def __init__(self, path, entry: str | None, field: str | None, problem: str):
        self.path, self.entry, self.field, self.problem = str(path), entry, field, problem
        where = self.path
        if entry is not None:
            where += f": entry '{entry}'"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {problem}")


class BaselineError(QuantgateError):
    """A baseline image is missing, unreadable, stale or made on other hardware."""


class BackendImportError(QuantgateError):
    """A backend in the matrix could not be imported."""


class CaseFailed(QuantgateError):
    """A case (model x configuration x device) could not be loaded or run."""


class CaseCrashed(CaseFailed):
    """The process that ran a case died (signal or abnormal exit)."""


class DoesNotFit(QuantgateError):
    """A CUDA case needs more GPU memory than is free: skipped, with the numbers."""


class CaseTimedOut(CaseFailed):
    """A case exceeded its time budget and was stopped."""


class CaseOutOfMemory(CaseFailed):
    """A case ran out of memory (host or GPU): reported with what it asked for and what was there."""


class CaseLeaked(QuantgateError):
    """A case left something behind after its process ended: a process, or device memory."""


class ScratchTooSmall(QuantgateError):
    """A regression path needs more free disk in its scratch folder than there is: named, with the numbers."""
