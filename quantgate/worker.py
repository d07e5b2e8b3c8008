"""The entry point of a case's own process: serve calls on a CaseSession until told to stop.

Imported by the fork server before any case starts (torch, diffusers and transformers with it),
so each case's process is a cheap fork of an already-initialised interpreter.
"""

from __future__ import annotations

import traceback

import diffusers  # noqa: F401  (preloaded in the fork server)
import torch  # noqa: F401
import transformers  # noqa: F401

from .run import session_class


def serve(conn, case, model_dir: str, cache_root: str, session_factory: str) -> None:
    try:
        session = session_class(session_factory)(case, model_dir, cache_root)
    except BaseException as exc:
        session = None
        failure = ("error", type(exc).__name__, str(exc), traceback.format_exc())
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
            conn.send(("error", type(exc).__name__, str(exc), traceback.format_exc()))
        else:
            conn.send(("ok", result))
