"""Drives cases for a session: one case process at a time, each case loaded once, results recorded.

Tests ask the runner for what they check (weights, images, timed denoising); the first ask loads
the case. A load failure is remembered and re-raised to every test of that case without loading
again. The reference (BF16) case of a model runs before the model's quantized cases, so their
ratios have a yardstick even when the run is filtered.
"""

from __future__ import annotations

import time
from pathlib import Path

from quantgate.backends import backend
from quantgate.case.isolation import open_case
from quantgate.case.leaks import DEFAULT_TOLERANCE
from quantgate.case.session import DEFAULT_SESSION, image_key
from quantgate.errors import (
    BackendImportError,
    CaseCrashed,
    CaseFailed,
    CaseOutOfMemory,
    CaseTimedOut,
    DoesNotFit,
    QuantgateError,
    ScratchTooSmall,
)
from quantgate.matrix import Case
from quantgate.results.record import CaseRecord
from quantgate.sources.cache import SCRATCH_ENV, model_dir
from quantgate.status import Outcome, Status
from quantgate.units import GIB


class KnownFailureReproduced(QuantgateError):
    """A case listed with known_failure failed as expected (pytest reports it as xfail)."""


def _status_of(exc: Exception) -> Status:
    if isinstance(exc, CaseCrashed):
        return Status.CRASHED
    if isinstance(exc, CaseTimedOut):
        return Status.TIMED_OUT
    if isinstance(exc, CaseOutOfMemory):
        return Status.OUT_OF_MEMORY
    if isinstance(exc, BackendImportError):
        return Status.IMPORT_FAILED
    if isinstance(exc, DoesNotFit):
        return Status.DOES_NOT_FIT
    return Status.FAILED


def _timing(out) -> tuple[float, float | None]:
    """(wall seconds, CPU seconds or None) of a session's denoise(): a dict {wall_s, cpu_s}, or the
    plain seconds a CaseSession subclass of an older kind returns."""
    if isinstance(out, dict):
        return out["wall_s"], out.get("cpu_s")
    return out, None


class Runner:
    def __init__(self, cache_root: Path, isolation: str = "process", reference_of=None,
                 session_factory: str = DEFAULT_SESSION, on_case_closed=None, needed_of=None,
                 leak_tolerance: int = DEFAULT_TOLERANCE, scratch_root: Path | None = None,
                 checkpoints_out: Path | None = None):
        self.cache_root = Path(cache_root)
        self.scratch_root = Path(scratch_root) if scratch_root else self.cache_root / "paths"
        self.checkpoints_out = checkpoints_out      # the store the round trips' checkpoints are kept in (a bump's base)
        self.isolation = isolation
        self.session_factory = session_factory
        self.on_case_closed = on_case_closed      # called after each case's process is closed
        self.reference_of = reference_of        # case -> its reference case (None for a reference)
        self.needed_of = needed_of              # case -> GPU bytes it needs (None: unknown, not checked)
        self.leak_tolerance = leak_tolerance
        self.records: dict[str, CaseRecord] = {}
        self.releases: dict = {}                # case id -> quantgate.case.leaks.Release, once it is closed
        self._model_dirs: dict[str, Path] = {}
        self._failures: dict[str, Exception] = {}
        self._images: dict[str, dict] = {}
        self._paths: dict[str, dict] = {}       # case id -> path name -> what the path returned
        self._active: tuple[str, object, float] | None = None    # (case id, handle, opened at)
        self._yardstick: tuple[str, object] | None = None        # (reference case id, handle)

    # -------------------------------------------------------------- models
    def model_dir(self, case: Case) -> Path:
        """The case's model folder, built (or an evicted component restored) first where it needs it;
        a GGUF case loads its denoiser from the GGUF file, so it does without the BF16 one."""
        without = backend(case.config.backend).model_without(case)
        if case.model.source == "synthetic" or case.model.name not in self._model_dirs:
            self._model_dirs[case.model.name] = model_dir(case.model, self.cache_root, without)
        return self._model_dirs[case.model.name]

    # -------------------------------------------------------------- case lifecycle
    def record(self, case: Case) -> CaseRecord:
        if case.id not in self.records:
            self.records[case.id] = CaseRecord.for_case(case)
        return self.records[case.id]

    def note_outcome(self, case: Case, test: str, outcome: Outcome) -> None:
        """A test's outcome, into its case's record."""
        self.record(case).tests[test] = outcome

    def note_similarity(self, case: Case, key: str, figures: dict) -> None:
        """An image's similarity to its baseline (quantgate.case.metrics.Similarity.as_dict), into its case's record."""
        self.record(case).similarity[key] = figures

    @staticmethod
    def _is_known_failure(case: Case, exc: Exception) -> bool:
        known = case.known_failure
        return known is not None and known.matches(str(exc))

    def _fail(self, case: Case, exc: Exception) -> Exception:
        rec = self.record(case)
        known = case.known_failure
        if self._is_known_failure(case, exc):
            rec.status, rec.error = Status.KNOWN_FAILURE, f"{known.reason}: {exc}"
            exc = KnownFailureReproduced(f"{case.id}: known failure ({known.reason}): {exc}")
        else:
            rec.status, rec.error = _status_of(exc), str(exc)
            if getattr(exc, "remote_traceback", None):
                rec.error += "\n" + exc.remote_traceback
        self._failures[case.id] = exc
        return exc

    def handle(self, case: Case):
        """The case's loaded process, loading it (and closing the previous case's) if needed."""
        if case.id in self._failures:
            raise self._failures[case.id]
        if self._active is not None and self._active[0] == case.id:
            return self._active[1]
        self.close_active()
        reference = self.reference_of(case) if self.reference_of else None
        if reference is not None and not self.record(reference).weights:
            try:
                self.handle(reference)
            except Exception:
                pass                        # the reference's own tests report its failure
            self.close_active()
        rec = self.record(case)
        try:
            folder = self.model_dir(case)              # a model build is not part of the case's time
            opened = time.perf_counter()
            handle = open_case(case, folder, self.cache_root, self.isolation, self.session_factory,
                               self.leak_tolerance)
            rec.start_s = (rec.start_s or 0.0) + handle.start_s        # a case reopened later adds up
            self._active = (case.id, handle, opened)
            needed = self.needed_of(case) if self.needed_of else None
            info = handle.call("load", *([needed] if needed else []))
            if case.known_failure is not None:
                # a known failure may break the first call rather than the load (quanto int4 on Wan):
                # one denoising call here, so that every test of the case meets it, in any selection
                handle.call("denoise")
        except Exception as exc:
            self.close_active(kill=True)
            if getattr(exc, "release", None) is not None:      # open_case closed a process that never started
                self.releases[case.id] = exc.release
            raise self._fail(case, exc) from exc
        rec.status = Status.OK
        rec.load_s, rec.weights = info["load_s"], info["components"]
        rec.memory.update(info.get("memory", {}))
        rec.environment, rec.hardware = info["environment"], info["environment"]["hardware"]
        rec.dtypes = info.get("dtypes", {})
        if reference is not None:
            rec.reference_bytes = {c: v["bytes"] for c, v in self.record(reference).weights.items()}
        return handle

    def call(self, case: Case, method: str, *args):
        handle = self.handle(case)
        try:
            return handle.call(method, *args)
        except (CaseCrashed, CaseTimedOut, CaseOutOfMemory) as exc:
            _, _, opened = self._active
            self._active = None                      # its process is gone already
            self.record(case).wall_s = (self.record(case).wall_s or 0.0) + time.perf_counter() - opened
            self.releases[case.id] = handle.close(kill=True)
            self.record(case).release = self.releases[case.id].as_dict()
            raise self._fail(case, exc) from exc
        except CaseFailed as exc:
            if self._is_known_failure(case, exc):
                raise self._fail(case, exc) from exc
            rec = self.record(case)                  # the case stays loaded; its record says what broke
            rec.status, rec.error = Status.FAILED, str(exc)
            raise

    def images(self, case: Case) -> dict:
        if case.id not in self._images:
            out = self.call(case, "generate")
            self._images[case.id] = out["images"]
            self.record(case).image_seconds = out["seconds"]
            self.record(case).memory.update(out.get("memory", {}))
        return self._images[case.id]

    def take_path(self, case: Case, name: str) -> dict:
        """Take regression path `name` once for the case (after its fresh images, which it is held
        against), in a scratch folder of its own under the cache; keep its figures in the case's
        record and return them with its images. A path that failed fails the same way again: it may
        have let the case's pipeline go."""
        taken = self._paths.setdefault(case.id, {})
        if name not in taken:
            self.images(case)
            if taken:                   # another path has had the pipeline: this one starts from a fresh load
                self._reopen(case)
            import shutil

            folder = self.scratch_root / name / case.id
            shutil.rmtree(folder, ignore_errors=True)
            rec = self.record(case)
            status, error = rec.status, rec.error
            try:
                folder.mkdir(parents=True)
                _check_scratch(name, folder, rec.weights, case)
                taken[name] = self.call(case, "run_path", name, str(folder))
                rec.paths[name] = {k: v for k, v in taken[name].items() if k != "images"}
                if name == "roundtrip" and self.checkpoints_out is not None:
                    self._keep_checkpoint(case, folder)
            except Exception as exc:
                taken[name] = exc
                rec.paths[name] = {"error": str(exc).splitlines()[0][:500]}
                if type(exc) is CaseFailed:      # the path's own error: the fresh load's figures stand, and
                    rec.status, rec.error = status, error   # its tests fail (a crash, timeout, OOM ends the case)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        if isinstance(taken[name], Exception):
            raise taken[name]
        return taken[name]

    def _keep_checkpoint(self, case: Case, folder: Path) -> None:
        """The round trip's saved components into the checkpoint store, with the fresh load's figures."""
        from quantgate.paths.store import keep

        rec = self.record(case)
        keys = {image_key(p.id, s) for p, s in case.model.path_images_pairs()}
        kept = keep(self.checkpoints_out, case.id, folder, rec.environment.get("packages") or {},
                    {c: rec.weights[c] for c in case.components}, {k: v for k, v in self.images(case).items() if k in keys})
        rec.paths["roundtrip"]["kept"] = str(kept) if kept else "already in the store"

    def denoise(self, case: Case) -> float:
        """Time one denoising call of the case; keep its wall and CPU seconds in its record."""
        wall, cpu = _timing(self.call(case, "denoise"))
        rec = self.record(case)
        rec.denoise_s.append(wall)
        if cpu is not None:
            rec.denoise_cpu_s.append(cpu)
        return wall

    # -------------------------------------------------------------- the yardstick
    def yardstick_denoise(self, case: Case) -> float:
        """Time one denoising call of the case's BF16 reference in its yardstick, and keep it in the
        case's record (yardstick_s). The yardstick is a second process running the reference, kept
        open beside the cases of one model and device, so that the reference's timed calls can
        alternate with each case's own: a neighbour that comes and goes then slows both alike."""
        reference = self.reference_of(case) if self.reference_of else None
        if reference is None:
            raise QuantgateError(f"{case.id} has no reference case to time beside it")
        try:
            handle = self._yardstick_for(reference)
            wall, cpu = _timing(handle.call("denoise"))
        except Exception as exc:
            self.close_yardstick(kill=True)
            raise QuantgateError(f"{case.id}: timing its BF16 reference ({reference.id}) beside it failed: "
                                 f"{exc}") from exc
        rec = self.record(case)
        rec.yardstick_s.append(wall)
        if cpu is not None:
            rec.yardstick_cpu_s.append(cpu)
        return wall

    def _yardstick_for(self, reference: Case):
        if self._yardstick is not None and self._yardstick[0] == reference.id:
            handle = self._yardstick[1]
            handle.renew_budget()
            return handle
        self.close_yardstick()
        handle = open_case(reference, self.model_dir(reference), self.cache_root, self.isolation,
                           self.session_factory, self.leak_tolerance)
        self._yardstick = (reference.id, handle)
        handle.call("load")
        handle.call("denoise")               # warm-up, as for every timed case
        return handle

    def close_yardstick(self, kill: bool = False) -> None:
        if self._yardstick is not None:
            _, handle = self._yardstick
            self._yardstick = None
            handle.close(kill=kill)

    def _reopen(self, case: Case) -> None:
        """Close the case's process and load the case again in a new one, for a regression path that
        must start from the fresh load (one before it may have changed or replaced the pipeline). The
        record keeps the first load's figures; what the first process left behind stays reported."""
        if self._active is not None and self._active[0] == case.id:
            self.close_active()
        rec = self.record(case)
        kept = (rec.load_s, dict(rec.memory), rec.weights, rec.dtypes)
        self.handle(case)
        rec.load_s, rec.memory, rec.weights, rec.dtypes = kept

    def close_active(self, kill: bool = False) -> None:
        if self._active is not None:
            case_id, handle, opened = self._active
            self._active = None
            earlier = self.releases.get(case_id)
            self.releases[case_id] = handle.close(kill=kill)
            if earlier is not None and earlier.problems():     # a reopened case: its first process's leak stands
                self.releases[case_id] = earlier
            self.records[case_id].release = self.releases[case_id].as_dict()
            self.records[case_id].wall_s = (self.records[case_id].wall_s or 0.0) + time.perf_counter() - opened
            if self.on_case_closed is not None:
                self.on_case_closed()

    def release(self, case: Case):
        """Close the case if it is open, and say what it left behind (None: it never started)."""
        if self._active is not None and self._active[0] == case.id:
            self.close_active()
        return self.releases.get(case.id)

    def close(self) -> None:
        self.close_active()
        self.close_yardstick()


# Room for a path's files beyond its components' weight bytes: over 101 round trips of the tiny models
# (CPU and H200, 2026-12-01) the saved files were 0.77-1.04x the weight bytes (headers, JSON metadata).
SCRATCH_SLACK = 1.05


def _check_scratch(name: str, folder: Path, weights: dict, case: Case) -> None:
    """Refuse, before anything is written, a path whose files would not fit in its scratch folder."""
    import shutil

    from quantgate.paths import path

    needed = int(path(name).scratch_bytes({c: weights[c] for c in case.components if c in weights}) * SCRATCH_SLACK)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ScratchTooSmall(
            f"{case.id}: the {name} path writes about {needed / GIB:.2f} GiB into {folder}, which has "
            f"{free / GIB:.2f} GiB free; point --qg-scratch-dir (or ${SCRATCH_ENV}) at a larger disk "
            f"(on a GPU runner with the RAM for it, /dev/shm), or leave the path out with -m \"not {name}\"")
