"""The entry point of a case's own process: serve calls on a CaseSession until told to stop.

Imported by the fork server before any case starts (torch, diffusers and transformers with it),
so each case's process is a cheap fork of an already-initialised interpreter.
"""

from __future__ import annotations

import traceback

import diffusers  # noqa: F401  (preloaded in the fork server)
import torch  # noqa: F401
import transformers  # noqa: F401

from quantgate.case.limits import apply_memory_limit, describe_out_of_memory, is_out_of_memory
from quantgate.case.session import session_class


def _failure(exc: BaseException, case) -> tuple:
    """What the parent is told of an exception: its kind, message and traceback; an out-of-memory
    error is told with its numbers (read here, in the case's process, as it happened)."""
    if is_out_of_memory(exc):
        try:
            text = describe_out_of_memory(exc, case.device, case.config.memory_limit_bytes)
        except Exception:        # the numbers are a courtesy: never lose the error for them
            text = f"out of memory on {case.device}: {exc}"
        return ("error", "OutOfMemory", text, traceback.format_exc())
    return ("error", type(exc).__name__, str(exc), traceback.format_exc())


def serve(conn, case, model_dir: str, cache_root: str, session_factory: str) -> None:
    try:
        if case.device == "cuda" and case.config.memory_limit_bytes:
            torch.cuda.init()
        apply_memory_limit(case.device, case.config.memory_limit_bytes)
        session = session_class(session_factory)(case, model_dir, cache_root)
    except BaseException as exc:
        session = None
        failure = _failure(exc, case)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        method, args = message
        if session is None:
            conn.send(failure)
            continue
        try:
            result = getattr(session, method)(*args)
        except BaseException as exc:  # reported to the parent, which fails the case
            conn.send(_failure(exc, case))
        else:
            conn.send(("ok", result))
