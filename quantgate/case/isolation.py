"""Where a case runs: in a process of its own (default) or inline, behind one interface.

A backend that segfaults, aborts or hangs ends only its own case's process: the parent sees the
pipe close (or the case's time budget pass), names the signal and the backend, and the session goes
on. An out-of-memory error closes the case's process at once. Closing a case checks what it left
behind (quantgate.case.leaks).

Cases are forked from a fork server that has already imported torch, diffusers and transformers
(quantgate.case.worker), so a case costs a fork, not an interpreter start. A process forked after CUDA
was initialised cannot use CUDA, so where a CUDA device is visible the server imports no backend and
no pipeline class (bitsandbytes and torchao initialise CUDA on import, and diffusers' pipelines
import them), and it runs with PYTORCH_NVML_BASED_CUDA_CHECK=1 (otherwise torch.cuda.is_available()
initialises the driver). Where none is visible, the server also imports diffusers' pipelines and the
backends (quantgate.case.preload), which saves each CPU case about 3 s of imports. Measured on an H100: a
CUDA case's process is ready in 8.4 s forked against 18.9 s spawned
(results/cuda-case-start-cuda-sm90.json). Should a forked CUDA case still fail to start, it is
started again in a fresh interpreter (spawn), and every later CUDA case of the session is spawned.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import warnings
from pathlib import Path

from quantgate.case.leaks import DEFAULT_TOLERANCE, Release, gpu_used_bytes, process_tree, settle_gpu, survivors
from quantgate.case.session import DEFAULT_SESSION
from quantgate.errors import BackendImportError, CaseCrashed, CaseFailed, CaseOutOfMemory, CaseTimedOut, DoesNotFit
from quantgate.hardware import gpu_shared_by
from quantgate.matrix import Case

MODES = ("process", "inline")
_fork_server = None
TRACEBACK_LINES = 12      # of the case process's traceback, shown in the failure message

PRELOAD_ENV = "QUANTGATE_PRELOAD_FAMILIES"   # the families the fork server preloads (quantgate.case.preload)


_spawn_cuda_cases = False  # set once a forked CUDA case could not start


def _context(device: str):
    """The fork server with the stack preloaded; spawn for CUDA cases once forking failed them."""
    global _fork_server
    if device == "cuda" and _spawn_cuda_cases:
        return multiprocessing.get_context("spawn")
    if _fork_server is None:
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")   # inherited by the server
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["quantgate.case.worker"] + ([] if _cuda_visible() else ["quantgate.case.preload"]))
        _fork_server = ctx
    return _fork_server


def _cuda_visible() -> bool:
    """Whether a CUDA device is visible, asked without initialising CUDA here (NVML-based check)."""
    import torch

    try:
        return torch.cuda.is_available()
    except Exception:
        return False


def _remote_failure(case: Case, method: str, kind: str, message: str, tb: str) -> Exception:
    if kind == "BackendImportError":
        return BackendImportError(message)
    if kind == "DoesNotFit":
        return DoesNotFit(message)
    if kind == "OutOfMemory":
        return CaseOutOfMemory(f"{case.id}: {method}: {message} (backend {case.config.backend}); its process "
                               "was closed, the rest of the matrix goes on")
    tail = "\n".join(tb.rstrip().splitlines()[-TRACEBACK_LINES:]) if tb else ""
    exc = CaseFailed(f"{case.id}: {method} raised {kind}: {message}"
                     + (f"\n--- end of the case process's traceback ---\n{tail}" if tail else ""))
    exc.remote_traceback = tb
    return exc


class CaseProcess:
    """A case's own process; `call` runs a CaseSession method there, within the case's time budget
    (timeout_s, counted from the process's start)."""

    def __init__(self, case: Case, model_dir: Path, cache_root: Path, session_factory: str,
                 leak_tolerance: int = DEFAULT_TOLERANCE):
        from quantgate.case import worker

        ctx = _context(case.device)
        self.start_method = ctx.get_start_method()
        self.case = case
        self.release = Release(case.id, tolerance=leak_tolerance)
        self.gpu_shared_by = gpu_shared_by() if case.device == "cuda" else 1
        if case.device == "cuda" and self.gpu_shared_by == 1:
            self.release.gpu_before = gpu_used_bytes()
        self.opened = self.budget_from = time.monotonic()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker.serve,
                                args=(child, case, str(model_dir), str(cache_root), session_factory),
                                name=f"quantgate-{case.id}", daemon=True)
        self.proc.start()
        child.close()

    def call(self, method: str, *args):
        budget = self.case.config.timeout_s
        try:
            self.conn.send((method, args))
            remaining = budget - (time.monotonic() - self.budget_from)
            if remaining <= 0 or not self.conn.poll(remaining):
                elapsed = time.monotonic() - self.budget_from
                self.close(kill=True)
                raise CaseTimedOut(f"{self.case.id}: exceeded the case's budget of {budget:g} s (timeout_s in "
                                   f"matrix.toml) during '{method}', {elapsed:.0f} s after its process started; "
                                   f"its process was killed (backend {self.case.config.backend})")
            status, *payload = self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            raise self._death(method) from None
        if status == "ok":
            return payload[0]
        failure = _remote_failure(self.case, method, *payload)
        if isinstance(failure, CaseOutOfMemory):
            self.close(kill=True)             # give its memory back before anything else runs
        raise failure

    def renew_budget(self) -> None:
        """Count the time budget from now: for a process that serves many cases (the yardstick)."""
        self.budget_from = time.monotonic()

    def _death(self, method: str) -> CaseCrashed:
        self.proc.join(timeout=10)
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        if code == -signal.SIGKILL:
            how += " (from outside the case: often the kernel's out-of-memory killer; see dmesg)"
        return CaseCrashed(f"{self.case.id}: the case's process {how} during '{method}' "
                           f"(backend {self.case.config.backend}); the rest of the matrix goes on")

    def close(self, kill: bool = False) -> Release:
        """End the case's process and check what it left behind (see quantgate.case.leaks)."""
        if self.conn.closed:
            return self.release
        tree = process_tree(self.proc.pid) if self.proc.is_alive() else []
        if self.proc.is_alive() and not kill:
            try:
                self.conn.send(None)
                self.proc.join(timeout=30)
            except (BrokenPipeError, OSError):
                pass
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=10)
        self.conn.close()
        rel = self.release
        rel.exitcode = self.proc.exitcode
        rel.processes_left = survivors(tree)
        rel.checked.append("processes it started")
        if rel.gpu_before is not None:
            rel.gpu_after = settle_gpu(rel.gpu_before, rel.tolerance)
            rel.checked.append("GPU memory in use (nvidia-smi)")
        elif self.gpu_shared_by > 1:
            rel.checked.append(f"GPU memory in use: not checked, the GPU is shared by {self.gpu_shared_by} "
                               "pytest-xdist workers, whose cases move it")
        return rel


class CaseInline:
    """The same interface, in this process: no isolation (for debugging and to measure its cost)."""

    def __init__(self, case: Case, model_dir: Path, cache_root: Path, session_factory: str,
                 leak_tolerance: int = DEFAULT_TOLERANCE):
        from quantgate.case.session import session_class

        self.case = case
        self.release = Release(case.id, tolerance=leak_tolerance)
        if case.device == "cuda":
            import torch

            self.release.gpu_before = torch.cuda.memory_allocated()
        self.session = session_class(session_factory)(case, str(model_dir), str(cache_root))

    def renew_budget(self) -> None:
        """Inline calls have no time budget."""

    def call(self, method: str, *args):
        import traceback

        try:
            return getattr(self.session, method)(*args)
        except (BackendImportError, DoesNotFit):
            raise
        except Exception as exc:
            raise _remote_failure(self.case, method, type(exc).__name__, str(exc), traceback.format_exc()) from exc

    def close(self, kill: bool = False) -> Release:
        import gc

        self.session = None
        gc.collect()
        if self.release.gpu_before is not None and self.release.gpu_after is None:
            import torch

            torch.cuda.empty_cache()
            self.release.gpu_after = torch.cuda.memory_allocated()
            self.release.checked.append("GPU memory allocated by torch (inline)")
        return self.release


def open_case(case: Case, model_dir: Path, cache_root: Path, mode: str = "process",
              session_factory: str = DEFAULT_SESSION, leak_tolerance: int = DEFAULT_TOLERANCE):
    if mode not in MODES:
        raise ValueError(f"unknown isolation mode {mode!r} (choose from: {', '.join(MODES)})")
    global _spawn_cuda_cases
    started = time.perf_counter()
    handle = (CaseProcess if mode == "process" else CaseInline)(case, model_dir, cache_root, session_factory,
                                                                leak_tolerance)
    try:
        handle.call("ping")           # ready: the process has started, imported and claimed its device
    except (CaseFailed, CaseCrashed) as exc:
        exc.release = handle.close(kill=True)
        if not (mode == "process" and case.device == "cuda" and handle.start_method == "forkserver"):
            raise
        _spawn_cuda_cases = True
        warnings.warn(f"{case.id}: a CUDA case forked from quantgate's fork server could not start "
                      f"({str(exc).splitlines()[0]}); this and every later CUDA case of the session "
                      f"runs in a fresh interpreter instead", RuntimeWarning, stacklevel=2)
        return open_case(case, model_dir, cache_root, mode, session_factory, leak_tolerance)
    handle.start_s = time.perf_counter() - started
    return handle
