"""GateSession: everything one pytest session of the gate shares, registered as a pytest plugin.

It resolves the options (where fixtures, baselines, the cache and the results are), reads the
fixtures once (GateData), parametrizes the tests over the cases, drives the cases through the
Runner, and writes the result set, the report and the terminal summary. Tests reach it as the `qg`
fixture: load a case, read its measurements, its baselines and expectations, and `check_images`.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from quantgate.case.runner import KnownFailureReproduced, Runner
from quantgate.errors import BackendImportError, BaselineError, DoesNotFit, QuantgateError
from quantgate.gate.data import GateData, read_gate_data
from quantgate.io import atomic_write
from quantgate.matrix import Case, Expectation, KnownFailure, expectation_classes, expectation_for, expectations_path
from quantgate.status import Outcome, Status
from quantgate.units import MIB

USED_BASELINES = "used-baselines.txt"   # a pytest-xdist worker's baselines that its tests used, for the controller
AFTER_CASE = "qg_after_case"     # marks the test that closes its case: it runs last of the case's tests

CASE_FIXTURES = {
    "qg_case": lambda c: True,
    "qg_quantized_case": lambda c: not c.config.is_reference,
    "qg_reference_case": lambda c: c.config.is_reference,
    "qg_cuda_case": lambda c: c.device == "cuda",
    "qg_roundtrip_case": lambda c: "roundtrip" in c.paths,
    "qg_lora_case": lambda c: "lora" in c.paths,
    "qg_compile_case": lambda c: "compile" in c.paths,
    "qg_previous_case": lambda c: "previous" in c.paths,
}


def _path(config, option: str, ini: str) -> Path:
    value = config.getoption(option) or config.getini(ini)
    path = Path(value).expanduser()
    return path if path.is_absolute() else config.rootpath / path


class GateSession:
    """Everything one pytest session of the gate shares."""

    config: pytest.Config
    fixtures_dir: Path
    baselines_dir: Path
    cache_root: Path
    allow_missing: bool
    started: datetime
    run_folder: Path | None         # .quantgate/runs/NAME with --qg-run-name (its `latest` is updated)
    worker: str | None              # this pytest-xdist worker's id
    controller: bool                # a pytest-xdist controller (it runs no case, it merges)
    results_dir: Path
    runner: Runner | None           # set when the data is read
    prebuild: list                  # processes building backend extensions (quantgate.backends.prebuild)
    used_baselines: set[Path]
    unused: list[Path]
    written: bool                   # a result set was written
    write_error: str | None
    report_error: str | None
    no_gpu_note: str | None

    def __init__(self, config):
        self.config = config
        self._gate_data: GateData | None = None
        self._data_error: QuantgateError | None = None
        self._identities: dict[str, str] = {}
        self._case_of_test: dict[str, Case] = {}
        self._known_test_failures: dict[str, KnownFailure] = {}   # test id -> its own known failure
        self.runner = None
        self.prebuild = []
        self.used_baselines = set()
        self.unused = []
        self.written, self.write_error, self.report_error, self.no_gpu_note = False, None, None, None
        self.fixtures_dir = _path(config, "--qg-fixtures", "qg_fixtures")
        self.baselines_dir = _path(config, "--qg-baselines", "qg_baselines")
        from quantgate.sources.cache import SCRATCH_ENV, default_cache_root

        cache = config.getoption("--qg-cache-dir")
        self.cache_root = Path(cache).expanduser().resolve() if cache else default_cache_root()
        scratch = config.getoption("--qg-scratch-dir") or os.environ.get(SCRATCH_ENV)
        self.scratch_root = Path(scratch).expanduser().resolve() if scratch else None
        from quantgate.paths.store import STORE_ENV

        kept, read = config.getoption("--qg-checkpoints-out"), config.getoption("--qg-checkpoints-in")
        self.checkpoints_out = Path(kept).expanduser().resolve() if kept else None
        self.checkpoints_in = Path(read).expanduser().resolve() if read else None
        if self.checkpoints_in is not None:
            if not self.checkpoints_in.is_dir():
                raise pytest.UsageError(f"--qg-checkpoints-in {read}: no such folder (the store a base run wrote with "
                                        "--qg-checkpoints-out)")
            os.environ[STORE_ENV] = str(self.checkpoints_in)     # read in the case processes
        self.allow_missing = config.getoption("--qg-allow-missing-backends")
        self.started = datetime.now(timezone.utc)
        results = config.getoption("--qg-results-dir")
        self.run_folder = None
        run_name = config.getoption("--qg-run-name")
        if run_name:
            if results:
                raise pytest.UsageError("give --qg-run-name or --qg-results-dir, not both")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run_name):
                raise pytest.UsageError(f"--qg-run-name {run_name!r}: use letters, digits, '.', '_' and '-'")
            self.run_folder = config.rootpath / ".quantgate" / "runs" / run_name
        from quantgate.gate.xdist import is_controller, is_worker

        self.worker = config.workerinput["workerid"] if is_worker(config) else None
        self.controller = is_controller(config)
        if self.worker:        # a pytest-xdist worker: its part of the controller's result set
            self.results_dir = Path(config.workerinput["qg_results_dir"]) / "workers" / self.worker
            self.run_folder = None
        elif results:
            self.results_dir = Path(results).expanduser().resolve()
            if (self.results_dir / "results.json").exists():
                raise pytest.UsageError(f"--qg-results-dir {self.results_dir} already holds a result set; "
                                        "choose a new folder (results are never overwritten)")
        else:
            stamp = self.started.strftime("%Y%m%d-%H%M%S")
            parent = self.run_folder or config.rootpath / ".quantgate" / "results"
            self.results_dir = parent / f"{stamp}-{os.getpid()}"
        problem = _unwritable(self.results_dir)
        if problem:
            raise pytest.UsageError(f"cannot write results to {self.results_dir}: {problem}; choose a writable "
                                    "folder with --qg-results-dir")

    # -------------------------------------------------------------- data
    def data(self) -> GateData:
        """The fixtures' data, read once (and the Runner made); an error is raised again on each ask."""
        if self._data_error is not None:
            raise self._data_error
        if self._gate_data is None:
            opt = self.config.getoption
            try:
                data = read_gate_data(self.fixtures_dir, opt("--qg-model"), opt("--qg-model-settings"),
                                      opt("--qg-config"), opt("--qg-shard"))
            except QuantgateError as exc:
                self._data_error = exc
                raise
            self._gate_data = data
            from quantgate.case.session import DEFAULT_SESSION

            self.runner = Runner(self.cache_root, opt("--qg-isolation"), self.reference_of,
                                 opt("--qg-case-session") or DEFAULT_SESSION,
                                 on_case_closed=self.write_results, needed_of=self.gpu_bytes_needed,
                                 leak_tolerance=int(data.defaults["leak_tolerance_mib"] * MIB),
                                 scratch_root=self.scratch_root, checkpoints_out=self.checkpoints_out)
        return self._gate_data

    def gpu_bytes_needed(self, case: Case) -> int | None:
        """What a CUDA case needs on the GPU, from measurement: the largest peak_inference_bytes_max
        that any CUDA hardware class's expectations give its configuration (None if none do)."""
        if case.device != "cuda":
            return None
        peaks = [table[case.config.id].peak_inference_bytes_max
                 for hw, table in self.data().expectations.get(case.model.name, {}).items()
                 if hw.startswith("cuda") and case.config.id in table]
        return max((p for p in peaks if p), default=None)

    def reference_of(self, case: Case) -> Case | None:
        return self.data().reference_of(case)

    # -------------------------------------------------------------- collection
    @pytest.hookimpl
    def pytest_generate_tests(self, metafunc):
        names = [n for n in CASE_FIXTURES if n in metafunc.fixturenames]
        if not names:
            return
        if len(names) > 1:
            raise QuantgateError(f"{metafunc.function.__name__} asks for {' and '.join(names)}: use one case fixture")
        name = names[0]
        params = [pytest.param(c, id=c.id, marks=self._marks(c)) for c in self.data().cases
                  if CASE_FIXTURES[name](c)]
        metafunc.parametrize(name, params)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        """pytest-xdist: tell each worker where its part of the results goes and which GPUs to use."""
        from quantgate.gate.xdist import host_gpus

        node.workerinput["qg_results_dir"] = str(self.results_dir)
        node.workerinput["qg_gpus"] = host_gpus()
        node.workerinput["qg_loadgroup"] = self.config.option.dist == "loadgroup"

    def _marks(self, case: Case) -> list:
        marks = [getattr(pytest.mark, m) for m in case.markers]
        if self.worker:
            marks.append(pytest.mark.xdist_group(case.id))
        if case.device == "cuda" and not _cuda_available():
            marks.append(pytest.mark.skip(reason="needs CUDA: no CUDA device is visible to torch here"))
        if case.known_failure is not None:
            marks.append(pytest.mark.xfail(strict=case.known_failure.strict, raises=KnownFailureReproduced,
                                           reason=f"known failure: {case.known_failure.reason}"))
        return marks

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        """Run all tests of a case together, cases in matrix order, so each case loads once.

        A case fixture left with no case (say, --qg-config picks no reference) deselects its test
        instead of reporting an empty parameter set."""
        if self._gate_data is None:
            return
        order = {c.id: i for i, c in enumerate(self._gate_data.cases)}

        def case_of(item):
            callspec = getattr(item, "callspec", None)
            for name in CASE_FIXTURES:
                if callspec is not None and name in callspec.params:
                    return callspec.params[name]
            return None

        cases = [(item, case_of(item)) for item in items]
        empty = [item for item, case in cases if case is not None and not isinstance(case, Case)]
        if empty:
            config.hook.pytest_deselected(items=empty)
        kept = [(item, case) for item, case in cases if case is None or isinstance(case, Case)]
        if self._gate_data.shard:            # after -m and -k: shard what this run would run
            from quantgate.matrix.sharding import shard_cases

            present = sorted({c.id: c for _, c in kept if c is not None}.values(), key=lambda c: order[c.id])
            mine = {c.id for c in shard_cases(present, *self._gate_data.shard)}
            config.hook.pytest_deselected(items=[i for i, c in kept if c is not None and c.id not in mine])
            kept = [(i, c) for i, c in kept if c is None or c.id in mine]
        for item, case in kept:
            # one test's known failure, unless the whole case is known to fail (that failure is every test's)
            known = (case.known_test_failure(item.originalname)
                     if case is not None and case.known_failure is None else None)
            if known is not None:       # one test's known failure: its assertion, with its message
                # its assertion, or the error its step raised (a regression path's); the message decides
                item.add_marker(pytest.mark.xfail(strict=known.strict, raises=(AssertionError, QuantgateError),
                                                  reason=f"known failure: {known.reason}"))
                self._known_test_failures[item.nodeid] = known
            if case is not None and item.get_closest_marker(AFTER_CASE) is not None:
                # a known failure is the case's, not its clean-up's: the release check must pass
                item.own_markers[:] = [m for m in item.own_markers if m.name != "xfail"]
        self._case_of_test = {item.nodeid: case for item, case in kept if case is not None}
        if not self.controller:          # an xdist controller runs no case
            from quantgate.backends.prebuild import start

            # builds and checkpoints made ahead, for the cases this run kept (after -m, -k, --qg-shard)
            self.prebuild = start(list({c.id: c for c in self._case_of_test.values()}.values()), self.cache_root)
        from quantgate.case.isolation import PRELOAD_ENV

        # the case processes' fork server preloads the families this run kept (before it starts)
        os.environ[PRELOAD_ENV] = ",".join(sorted({c.model.family for c in self._case_of_test.values()}))
        from quantgate.paths import names as path_names

        def rank(item, case: Case) -> tuple[int, int]:
            """A case's own tests, then its paths' in the order its configuration names them (a path
            may replace the case's pipeline), then its close."""
            if item.get_closest_marker(AFTER_CASE) is not None:
                return 2, 0
            taken = [n for n in path_names() if item.get_closest_marker(n)]
            if not taken:
                return 0, 0
            return 1, case.paths.index(taken[0]) if taken[0] in case.paths else len(case.paths)

        kept.sort(key=lambda pair: (-1, 0, 0) if pair[1] is None else (order[pair[1].id], *rank(*pair)))
        items[:] = [item for item, _ in kept]

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item, call):
        """A test with a known failure of its own fails if its assertion says something else."""
        outcome = yield
        known = self._known_test_failures.get(item.nodeid)
        if known is None or call.when != "call" or call.excinfo is None:
            return
        report = outcome.get_result()
        message = str(call.excinfo.value)
        if hasattr(report, "wasxfail") and not known.matches(message):
            del report.wasxfail
            report.outcome = "failed"
            report.longrepr = (f"{item.nodeid} failed, but not as its known failure (models.toml/matrix.toml "
                               f"known failure: a message containing {' or '.join(map(repr, known.match))}): "
                               f"{call.excinfo.typename}: {message}")

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report):
        """Keep each test's outcome in its case's record, for the results files."""
        case = self._case_of_test.get(report.nodeid)
        if case is None or self.runner is None:
            return
        if report.when == "call" or report.outcome != "passed":
            outcome = Outcome(report.outcome)
            if hasattr(report, "wasxfail") and report.outcome == "skipped":
                outcome = Outcome.XFAILED
            if report.when != "call" and report.outcome == "failed":
                outcome = Outcome.ERROR
            self.runner.note_outcome(case, report.nodeid.split("::")[-1].split("[")[0], outcome)

    # -------------------------------------------------------------- session end
    @pytest.hookimpl(hookwrapper=True, tryfirst=True, specname="pytest_sessionfinish")
    def pytest_sessionfinish_benchmark_json(self, session, exitstatus):
        """pytest-benchmark's JSON (every timed call, machine_info) beside results.json, unless the
        user sends it elsewhere with --benchmark-json: `quantgate compare` reads latency from it."""
        bs = getattr(self.config, "_benchmarksession", None)
        if (bs is not None and self.runner is not None and self.runner.records and not bs.disabled
                and bs.json is None and bs.benchmarks):
            try:
                self.results_dir.mkdir(parents=True, exist_ok=True)
                bs.json = open(self.results_dir / "benchmark.json", "wb")
            except OSError as exc:
                self.write_error = f"could not write {self.results_dir / 'benchmark.json'}: {exc}"
        yield

    def environment_of_cases(self) -> dict | None:
        """The environment the case processes measured in (a CUDA case's, where there is one)."""
        if self.runner is None:
            return None
        envs = [r.environment for r in self.runner.records.values() if r.environment]
        return next((e for e in envs if e.get("gpu")), envs[0] if envs else None)

    @pytest.hookimpl
    def pytest_sessionfinish(self, session, exitstatus):
        markexpr = self.config.getoption("markexpr", "") or ""
        if (exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and re.search(r"(?<!not )\bgpu\b", markexpr)
                and not _cuda_available()):
            # `pytest -m gpu` on a machine without CUDA: nothing to run is the expected outcome
            session.exitstatus = pytest.ExitCode.OK
            self.no_gpu_note = "quantgate: -m gpu selected no test and no CUDA device is visible: nothing to run"
        if self.controller:
            self.merge_workers()
            self.used_baselines = {Path(line) for part in sorted((self.results_dir / "workers").glob(f"*/{USED_BASELINES}"))
                                   for line in part.read_text().splitlines() if line}
            self._fail_on_unused(session)
            if self.write_error and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            return
        from quantgate.backends.prebuild import finish

        finish(self.prebuild)
        if self.runner is None:
            return
        self.runner.close()
        self.write_results()
        if self.written and not self.worker:   # a worker's part: the controller reports it
            self.finish_result_set()
        if self.worker:          # a worker saw only its share: the controller judges them all
            try:
                self.results_dir.mkdir(parents=True, exist_ok=True)
                atomic_write(self.results_dir / USED_BASELINES, "".join(f"{p}\n" for p in sorted(self.used_baselines)))
            except OSError as exc:
                self.write_error = f"could not write {self.results_dir / USED_BASELINES}: {exc}"
        else:
            self._fail_on_unused(session)
        if self.write_error and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR     # a green run whose record is lost is no pass

    def _fail_on_unused(self, session) -> None:
        if self.controller and self._gate_data is None and not self.config.getoption("--qg-model"):
            try:
                self.data()          # the controller collected nothing: which models are there
            except QuantgateError:
                pass                 # the workers reported it
        self.unused = self.unused_baselines()
        if self.unused and self.config.getoption("--qg-unused-baselines") == "fail" \
                and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def write_results(self) -> None:
        """Write the result set so far; called after each case and at the end, so a run that is
        killed keeps what it measured."""
        records = [r for r in self.runner.records.values() if r.status != Status.NOT_RUN]
        if not records:
            return
        from quantgate.hardware import environment
        from quantgate.results.record import write_results

        env = next((r.environment for r in records if r.environment), None) or environment("cpu")
        try:
            write_results(self.results_dir, records, env, self.started.isoformat(timespec="seconds"))
            self.written, self.write_error = True, None
        except OSError as exc:
            self.write_error = f"could not write results to {self.results_dir}: {exc}"

    def merge_workers(self) -> None:
        """pytest-xdist's controller: one result set (and report) from the workers' parts."""
        from quantgate.results.merge import merge_results

        parts = sorted((self.results_dir / "workers").glob("*/results.json"))
        if not parts:
            return
        try:
            merge_results(parts, self.results_dir)
            self.written, self.write_error = True, None
        except (OSError, QuantgateError) as exc:
            self.write_error = f"could not merge the workers' results into {self.results_dir}: {exc}"
            return
        self.finish_result_set()

    def finish_result_set(self) -> None:
        """After the last results are written: the report, and the run folder's `latest` pointer."""
        if not self.config.getoption("--qg-no-report"):
            self.write_report()
        if self.run_folder is not None:
            from quantgate.io import atomic_write

            atomic_write(self.run_folder / "latest", self.results_dir.name + "\n")

    def write_report(self) -> None:
        """report.html beside results.json (quantgate.results.report); a report that cannot be made is said,
        and the results stay as written."""
        from quantgate.results.report import write

        try:
            write(self.results_dir / "results.json", self.results_dir / "report.html", self.baselines_dir,
                  self.fixtures_dir)
            self.report_error = None
        except Exception as exc:  # noqa: BLE001 (the measurements are written; the report is a view of them)
            self.report_error = f"could not write the HTML report: {type(exc).__name__}: {exc}"

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter):
        tr = terminalreporter
        if self.no_gpu_note:
            tr.write_line(self.no_gpu_note)
        if not self.written and (self.runner is None or not self.runner.records):
            return
        tr.section("quantgate")
        if self.write_error:
            tr.write_line(self.write_error + (" (the last result set written before it is intact)"
                                              if self.written else ""), red=True)
        if self.written:
            text = (self.results_dir / "results.md").read_text()
            table = [line for line in text.splitlines() if line.startswith("|")]
            for line in table:
                tr.write_line(line)
            tr.write_line(f"results: {self.results_dir} (results.json, results.md, images/"
                          + (", report.html" if (self.results_dir / "report.html").exists() else "") + ")")
            if self.report_error:
                tr.write_line(self.report_error, red=True)
        unused = self.unused
        if unused:
            failing = self.config.getoption("--qg-unused-baselines") == "fail"
            tr.write_line(f"{len(unused)} unused baseline(s): no test of this run used them"
                          + (" (fails the session: --qg-unused-baselines=fail)" if failing else "")
                          + "; delete them, or bring back the prompt, seed or model they were made for:",
                          red=failing, yellow=not failing)
            for path in unused:
                tr.write_line(f"  {path}")

    # -------------------------------------------------------------- the gateway tests use
    def _guard(self, case: Case, fn, *args):
        self.data()
        try:
            return fn(case, *args)
        except BackendImportError as exc:
            if self.allow_missing:
                pytest.skip(f"backend missing, skipped by --qg-allow-missing-backends: {exc}")
            raise
        except DoesNotFit as exc:
            pytest.skip(str(exc))

    def load(self, case: Case):
        """Load the case (once per session) and return its record."""
        self._guard(case, self.runner.handle)
        return self.runner.record(case)

    record = load

    def images(self, case: Case) -> dict:
        return self._guard(case, self.runner.images)

    def denoise(self, case: Case, record: bool = True) -> float:
        if record:
            return self._guard(case, self.runner.denoise)
        return self._guard(case, self.runner.call, "denoise")

    def uses_yardstick(self, case: Case) -> bool:
        """Whether the case's timed calls alternate with its reference's (matrix [defaults]
        latency_yardstick names the devices where they do)."""
        return not case.config.is_reference and case.device in self.defaults()["latency_yardstick"]

    def reference_beside(self, case: Case):
        """For pytest-benchmark's pedantic `setup`: a function that times one call of the case's BF16
        reference in its yardstick before each of the case's timed calls (returns None, as `setup`
        must); None where the case uses no yardstick."""
        if not self.uses_yardstick(case):
            return None

        def one_reference_call() -> None:
            self._guard(case, self.runner.yardstick_denoise)

        return one_reference_call

    def latency_rounds(self, case: Case) -> int:
        return case.model.timed_rounds(self.defaults())

    def latency_ratio(self, case: Case) -> "LatencyRatio":
        """The case's fastest denoising call over its BF16 reference's fastest, each over at least
        the model's latency_rounds calls: where fewer were timed (a filtered run, or
        --benchmark-disable, which times one), the rest are timed here. With a yardstick the
        reference's calls alternate with the case's; without, they are the reference case's own,
        timed earlier in this session."""
        from quantgate.results.record import latency_clock, timed_calls

        reference = self.reference_of(case)
        rounds = self.latency_rounds(case)
        mine = self.runner.record(case)
        if not mine.denoise_s:
            self.denoise(case, record=False)                 # warm-up
        if self.uses_yardstick(case):
            beside = self.reference_beside(case)
            while len(mine.denoise_s) < rounds or len(mine.yardstick_s) < rounds:
                beside()
                self.denoise(case)
        else:
            theirs = self.runner.record(reference).denoise_s
            if not theirs:
                self.denoise(reference, record=False)
            while len(theirs) < rounds:
                self.denoise(reference)
            while len(mine.denoise_s) < rounds:
                self.denoise(case)
        clock = latency_clock(mine)
        calls, theirs = timed_calls(mine, self.runner.record(reference), clock)
        return LatencyRatio.of(calls, theirs, mine.steps, clock)

    def latency_ratio_again(self, case: Case) -> "LatencyRatio":
        """The same ratio over a second window: the model's latency_rounds more calls of the case,
        alternating with its yardstick's (or after as many of the reference's), judged on these
        calls alone. A shared host can slow one window (a CPU case's ratio once read 1.50x where its
        runs before and after read 1.07-1.08x, 2026-12-02); a slowdown of the stack shows in both.
        Every call stays in the case's record."""
        from quantgate.results.record import latency_clock, timed_calls

        reference = self.reference_of(case)
        rounds = self.latency_rounds(case)
        mine, theirs_rec = self.runner.record(case), self.runner.record(reference)
        clock = latency_clock(mine)
        before = [len(x) for x in timed_calls(mine, theirs_rec, clock)]
        for _ in range(rounds):
            if self.uses_yardstick(case):
                self.reference_beside(case)()
            else:
                self.denoise(reference)
            self.denoise(case)
        calls, theirs = (x[n:] for x, n in zip(timed_calls(mine, theirs_rec, clock), before))
        return LatencyRatio.of(calls, theirs, mine.steps, clock)

    def release(self, case: Case):
        """Close the case and say what it left behind (quantgate.case.leaks.Release; None if it never started)."""
        self.data()
        return self.runner.release(case)

    def expectation(self, case: Case) -> Expectation:
        rec = self.record(case)
        found = expectation_for(self.data().expectations.get(case.model.name, {}),
                                expectation_classes(rec.hardware, rec.environment), case.config.id)
        if found is None:
            pytest.fail(f"no expectations for '{case.config.id}' on hardware class {rec.hardware}: add a table "
                        f"[\"{rec.hardware}\".\"{case.config.id}\"] to {expectations_path(self.fixtures_dir, case.model.name)} "
                        "(quantgate propose-expectations turns a result set into one)", pytrace=False)
        return found

    def model_identity(self, case: Case) -> str:
        from quantgate.sources.checkpoints import identity

        if case.model.name not in self._identities:
            self._identities[case.model.name] = identity(case.model, self.runner.model_dir(case))
        return self._identities[case.model.name]

    def defaults(self) -> dict:
        """The matrix's [defaults] (timeout_s, latency_rounds, shrink_ratio_max)."""
        return self.data().defaults

    def baseline(self, case: Case, prompt, seed: int, variant: str | None = None):
        from quantgate.results.baselines import BaselineStore

        rec = self.record(case)
        store = BaselineStore(self.baselines_dir)
        png, meta = store.paths(case.model.name, rec.hardware, prompt.id, seed, variant)
        self.used_baselines.update((png, meta))          # used, even when it turns out to be unusable
        try:
            return store.load(case.model, rec.hardware, prompt, seed, case.device, self.model_identity(case),
                              variant)
        except BaselineError as exc:
            pytest.fail(str(exc), pytrace=False)

    def unused_baselines(self) -> list[Path]:
        """Baseline files no test used, in the folders this run used; and, when the run covers every
        model of models.toml, folders of models that are not in it (as syrupy reports unused snapshots)."""
        from quantgate.results.baselines import BaselineStore

        folders = {p.parent for p in self.used_baselines}
        unused = [p for folder in folders if folder.is_dir() for p in sorted(folder.iterdir())
                  if p.is_file() and not p.name.startswith(".") and p not in self.used_baselines]
        if self._gate_data is not None and not self.config.getoption("--qg-model") and self.baselines_dir.is_dir():
            models = self._gate_data.models
            store = BaselineStore(self.baselines_dir)
            for folder in sorted(self.baselines_dir.iterdir()):
                if folder.is_dir() and not folder.name.startswith(".") and folder.name not in models:
                    unused += [folder / hw for hw in store.hardware_classes(folder.name)]
        return unused

    def save_image(self, case: Case, key: str, image) -> Path:
        from PIL import Image

        path = self.results_dir / "images" / case.id / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="RGB").save(path, format="PNG")
        return path

    def check_images(self, case: Case) -> None:
        """The image check (quantgate.gate.image_check): every image of the case against its BF16
        baseline; the figures go into the case's record, the images beside the results, and the test
        fails with every floor its expectations set that an image crossed."""
        from quantgate.case.session import image_key
        from quantgate.gate.image_check import problems, similarity

        self.load(case)
        images = self.images(case)
        measured = {}
        for prompt, seed in case.model.images():
            key = image_key(prompt.id, seed)
            sim = similarity(case, self.baseline(case, prompt, seed), images[key])
            self.runner.note_similarity(case, key, sim.as_dict())
            measured[key] = (sim, self.save_image(case, key, images[key]))
        expected = self.expectation(case)
        found = [p for key, (sim, saved) in measured.items() for p in problems(key, sim, expected, saved)]
        assert not found, "image drifted from the BF16 baseline: " + "\n  ".join(found)   # the first line has the figures

    def take_path(self, case: Case, name: str) -> dict:
        """Take regression path `name` (quantgate.paths) for the case, once: what it returned, its
        images included; its figures are in the case's record (paths)."""
        self.load(case)
        return self._guard(case, self.runner.take_path, name)

    def check_path_images(self, case: Case, name: str, step: str | None = None, against: str | None = None,
                          ssim_min: float | None = None) -> None:
        """The images regression path `name` made (those of its `step`, for a path that makes
        several) against the case's fresh load's (or its step `against`'s): each must be the same
        image, pixel for pixel, or with `ssim_min` at that SSIM or above; the SSIM/PSNR of any that
        is not the same go into the case's record."""
        figures, differ = self._path_similarity(case, name, step, against, ssim_min)
        what = f"the {name} path's images" + (f" ({step})" if step else "")
        rule = f"within SSIM {ssim_min} of " if ssim_min is not None else ""
        assert not differ, f"{what} are not {rule}{_source(name, against)}:\n  " + "\n  ".join(differ)

    def check_path_images_against_baseline(self, case: Case, name: str, step: str, variant: str) -> None:
        """Path `name`'s `step` images against the BF16 reference's baselines of that `variant` (the
        reference taken down the same path), judged by the case's own image floors less the matrix's
        <variant>_baseline_ssim_margin and _psnr_margin of its device: a quantized pipeline moves with the path the
        way BF16 does. The figures go into the case's record (paths: similarity_<step>_to_bf16)."""
        import dataclasses

        from quantgate.case.session import image_key
        from quantgate.gate.image_check import problems, similarity

        made = self.take_path(case, name)["images"][step]
        defaults = self.defaults()
        ssim_m = defaults[f"{variant}_baseline_ssim_margin"][case.device]
        psnr_m = defaults[f"{variant}_baseline_psnr_margin"][case.device]
        own = self.expectation(case)
        lower = (lambda floor, m: None if floor is None else floor - m)
        floors = dataclasses.replace(own, ssim_min=lower(own.ssim_min, ssim_m), psnr_min=lower(own.psnr_min, psnr_m),
                                     ssim_frame_min=lower(own.ssim_frame_min, ssim_m),
                                     psnr_frame_min=lower(own.psnr_frame_min, psnr_m),
                                     temporal_ratio_min=None, temporal_ratio_max=None)
        figures, found = {}, []
        for prompt, seed in case.model.path_images_pairs():
            key = image_key(prompt.id, seed)
            sim = similarity(case, self.baseline(case, prompt, seed, variant), made[key])
            figures[key] = sim.as_dict()
            saved = self.save_image(case, f"{key}-{name}-{step}", made[key])
            found += problems(key, sim, floors, saved)
        self.runner.record(case).paths.setdefault(name, {})[f"similarity_{step}_to_bf16"] = figures
        assert not found, (
            f"the {name} path's images ({step}) drifted from BF16's with the same {variant} (baselines "
            f"{variant}/): the case's image floors less {ssim_m} SSIM and {psnr_m} dB (matrix.toml "
            f"{variant}_baseline_ssim_margin, _psnr_margin):\n  " + "\n  ".join(found))

    def lora_fused_floor(self, case: Case) -> float:
        """The SSIM a fused (or unfused) LoRA's images keep to the unfused LoRA's, the higher of two
        floors. One: the matrix's lora_fused_ssim_min, or the case's own image floor less
        lora_fused_ssim_margin where that is lower; fusing quantizes W + BA afresh in the weights'
        format, which rounds it about as far as quantizing rounded BF16's weights, so a 4-bit case
        rounds further than an int8 one. Two: the fused images close all but lora_fused_gap_max of
        the gap the LoRA opened from the fresh load's (1 - SSIM); a fuse that is not applied, or an
        unfuse that leaves BA in, closes none of it, however little the LoRA moved the images."""
        defaults = self.defaults()
        own = self.expectation(case).ssim_min
        rounding = defaults["lora_fused_ssim_min"]
        if own is not None:
            rounding = min(rounding, own - defaults["lora_fused_ssim_margin"])
        moved = self.path_moved_ssim(case, "lora", "lora")
        return round(max(rounding, 1 - defaults["lora_fused_gap_max"] * (1 - moved)), 4)

    def path_moved_ssim(self, case: Case, name: str, step: str) -> float:
        """The lowest SSIM of path `name`'s `step` images against the fresh load's (1.0: unmoved);
        its figures go into the case's record."""
        figures, _ = self._path_similarity(case, name, step, None)
        return min(f.get("ssim", 1.0) for f in figures.values())

    def _path_similarity(self, case: Case, name: str, step: str | None, against: str | None,
                         ssim_min: float | None = None):
        from quantgate.case.metrics import compare
        from quantgate.case.session import image_key

        taken = self.take_path(case, name)["images"]
        made = taken[step] if step else taken
        base = taken[against] if against else self.images(case)
        figures, differ = {}, []
        for prompt, seed in case.model.path_images_pairs():
            key = image_key(prompt.id, seed)
            if np.array_equal(base[key], made[key]):
                figures[key] = {"identical": True}
                continue
            sim = compare(base[key], made[key])
            figures[key] = {"identical": False, "ssim": sim.ssim, "psnr": sim.psnr}
            if ssim_min is not None and sim.ssim >= ssim_min:
                continue
            saved = self.save_image(case, f"{key}-{name}" + (f"-{step}" if step else ""), made[key])
            differ.append(f"{key}: SSIM {sim.ssim:.4f}, PSNR {sim.psnr:.2f} dB against {_source(name, against)}"
                          f" (saved: {saved})")
        field = "similarity" + (f"_{step}" if step else "") + (f"_to_{against}" if against else "")
        self.runner.record(case).paths.setdefault(name, {})[field] = figures
        return figures, differ


def _source(name: str, against: str | None) -> str:
    return f"the {name} path's {against} images" if against else "the fresh load's"


class LatencyRatio(NamedTuple):
    ratio: float
    ms_per_step: float              # the case's fastest call, per step
    reference_ms_per_step: float    # the reference's fastest call, per step
    clock: str                      # 'cpu' (CPU time) or 'wall'

    @classmethod
    def of(cls, calls: list, theirs: list, steps: int, clock: str) -> "LatencyRatio":
        """The fastest of the case's `calls` over the fastest of the reference's `theirs` (seconds of
        `clock`), each also per step in ms."""
        return cls(min(calls) / min(theirs), min(calls) / steps * 1000.0, min(theirs) / steps * 1000.0, clock)

    def describe(self, digits: int = 2) -> str:
        what = "ms of CPU time" if self.clock == "cpu" else "ms"
        return (f"{self.ms_per_step:.1f} {what} per step (fastest call) is {self.ratio:.{digits}f}x BF16's "
                f"{self.reference_ms_per_step:.1f} {what}")


def _unwritable(folder: Path) -> str | None:
    """Why results could not be written under `folder` (checked before any case runs), or None."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return "no folder of its path exists"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user"
    return None


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


