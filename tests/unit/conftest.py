"""Shared helpers for quantgate's own tests."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from quantgate.matrix import load_models
from quantgate.sources.cache import ensure_synthetic

REPO = Path(__file__).resolve().parents[2]
GATE_TESTS = REPO / "tests" / "gate"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One model cache for every test of the session (tiny-flux builds in about a second)."""
    return tmp_path_factory.mktemp("qg-cache")


HARNESS_MODELS = ("tiny-flux", "flux-dev-synth")


def _only_models(models_toml: str, keep: tuple[str, ...]) -> str:
    """models.toml with only the tables (and their sub-tables) of the models in `keep`."""
    out, keeping = [], True
    for line in models_toml.splitlines(keepends=True):
        if line.startswith("["):
            keeping = line.strip("[]\n ").split(".")[0] in keep
        if keeping:
            out.append(line)
    return "".join(out)


@functools.cache
def harness_dirs() -> tuple[Path, Path]:
    """(fixtures, baselines) of the harness's own tests: the repository's, with the FLUX models only.
    The harness is judged on the embedded default model; the other families' tiny models run in the
    gate itself (tox -e gate), not once more in every planted run here."""
    root = Path(tempfile.mkdtemp(prefix="qg-harness-"))
    fixtures, baselines = root / "fixtures", root / "baselines"
    shutil.copytree(REPO / "fixtures", fixtures)
    models = fixtures / "models.toml"
    models.write_text(_only_models(models.read_text(), HARNESS_MODELS))
    for name in HARNESS_MODELS:
        if (REPO / "baselines" / name).is_dir():
            shutil.copytree(REPO / "baselines" / name, baselines / name)
    return fixtures, baselines


@pytest.fixture
def fixtures_copy(tmp_path) -> Path:
    """A private copy of the harness's fixtures (FLUX models), for tests that plant bad or changed data."""
    dst = tmp_path / "fixtures"
    shutil.copytree(harness_dirs()[0], dst)
    return dst


@pytest.fixture
def all_fixtures_copy(tmp_path) -> Path:
    """A private copy of the repository's fixtures, every family's models included."""
    dst = tmp_path / "fixtures"
    shutil.copytree(REPO / "fixtures", dst)
    return dst


@pytest.fixture
def baselines_copy(tmp_path) -> Path:
    dst = tmp_path / "baselines"
    shutil.copytree(harness_dirs()[1], dst)
    return dst


@pytest.fixture
def run_gate(pytester, shared_cache, tmp_path):
    """Run the gate's CPU tier in a subprocess against the given fixtures and baselines."""

    def run(*args, fixtures: Path | None = None, baselines: Path | None = None, env: dict | None = None):
        for key, value in (env or {}).items():
            pytester._monkeypatch.setenv(key, value)
        results = tmp_path / f"results-{len(list(tmp_path.glob('results-*')))}"
        run.results_dirs.append(results)
        return pytester.runpytest_subprocess(
            str(GATE_TESTS), "-p", "no:cacheprovider", *NO_PLUGINS, "--benchmark-disable", "-m", CPU_TIER,
            "--qg-fixtures", str(fixtures or harness_dirs()[0]),
            "--qg-baselines", str(baselines or harness_dirs()[1]),
            "--qg-cache-dir", str(shared_cache), "--qg-results-dir", str(results), "--qg-no-report", *args)

    run.results_dirs = []
    return run


UNCHANGED_CONFIGS = ("bf16", "torchao-int8wo", "quanto-int8")
# the CPU tier without the regression paths, which tests/unit/test_paths.py takes on its own: the
# runs here test other parts of the gate, with counts of their tests
CPU_TIER = "not gpu and not paths"
# plugins a gate run here has no use for: hypothesis's takes about 1.2 s of each run's start
NO_PLUGINS = ("-p", "no:hypothesispytest")


def latency_gated_here() -> bool:
    """Whether the shipped expectations give this machine's CPU class latency ceilings (tiny-flux).
    Where they do not, the gate records each ratio and skips its test: one skip per quantized case."""
    import tomllib

    from quantgate.hardware import cpu_class

    data = tomllib.loads((REPO / "fixtures" / "expectations" / "tiny-flux.toml").read_text())
    return any("latency_ratio_max" in t for t in data.get(cpu_class(), {}).values())
NEIGHBOUR_LIMIT_S = 1200      # a busy neighbour ends by itself after this long, whatever happens to the test


@contextmanager
def busy_neighbour():
    """One busy process per core beside whatever runs in the block, as a shared CI runner has: each
    spins in a Python loop, and all are killed when the block ends (each also stops by itself after
    NEIGHBOUR_LIMIT_S)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    spin = f"import time\nend = time.monotonic() + {NEIGHBOUR_LIMIT_S}\nwhile time.monotonic() < end: pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(cores)]
    try:
        yield len(hogs)
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait(timeout=30)


def gate_run(out: Path, cache: Path, planted: dict | None = None,
             fixtures: Path | None = None) -> tuple[Path, subprocess.CompletedProcess]:
    """One run of the gate's CPU tier on UNCHANGED_CONFIGS with pytest-benchmark on (the model's
    latency_rounds timed calls a case), its results in `out`; `planted` = {config: faults} runs it with
    planted faults, `fixtures` with other fixtures than the repository's."""
    env = dict(os.environ)
    args = [sys.executable, "-m", "pytest", str(GATE_TESTS), "-p", "no:cacheprovider", *NO_PLUGINS, "-q", "-m", CPU_TIER,
            "--qg-fixtures", str(fixtures or harness_dirs()[0]), "--qg-baselines", str(harness_dirs()[1]),
            "--qg-cache-dir", str(cache), "--qg-results-dir", str(out), "--benchmark-enable", "--qg-no-report",
            "--qg-unused-baselines=fail",
            "--benchmark-autosave", f"--benchmark-storage=file://{out.parent / 'storage'}"]
    for c in UNCHANGED_CONFIGS:
        args += ["--qg-config", c]
    if planted:
        (out.parent / "planted_sessions.py").write_text(PLANTED)
        env.update(PYTHONPATH=str(out.parent), QG_PLANTED=",".join(f"{k}={v}" for k, v in planted.items()))
        args += ["--qg-case-session", "planted_sessions:Planted"]
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return out, done


@pytest.fixture(scope="session")
def unchanged_runs(tmp_path_factory, shared_cache):
    """Three runs of an unchanged stack, one after another, each beside a busy neighbour (one busy
    process per core); used by the no-flake test and as the base and the unchanged candidate of the
    compare tests."""
    root = tmp_path_factory.mktemp("unchanged")
    ensure_built(shared_cache)
    with busy_neighbour():
        return [gate_run(root / f"run{i}", shared_cache) for i in range(3)]


@pytest.fixture(scope="session")
def planted_run(tmp_path_factory, shared_cache, unchanged_runs):
    """The same run, beside the same neighbour, with planted regressions: torchao int8 holds 2 MiB
    more weights and denoises twice as slowly (every transformer forward computes twice as
    long); quanto int8's images drift. Its latency ceilings are the shipped ones where this machine's
    CPU class has them, else ones proposed from the unchanged runs on this machine (as a user adds a CPU
    class): either way, what the gate itself judges with."""
    root = tmp_path_factory.mktemp("planted")
    fixtures = latency_calibrated_fixtures(root / "fixtures", [out for out, _ in unchanged_runs])
    ensure_built(shared_cache)
    with busy_neighbour():
        return gate_run(root / "run", shared_cache, {"torchao-int8wo": "grow+slow", "quanto-int8": "drift"},
                        fixtures=fixtures)


LATENCY_MARGIN = "0.25"      # the margin the shipped CPU ceilings were proposed with (docs/cpu-classes.md)


def latency_calibrated_fixtures(dst: Path, runs: list[Path]) -> Path:
    """A copy of the fixtures in which every CPU class the runs measured on and the shipped
    expectations lack gets the latency ceilings `quantgate propose-expectations` makes from the runs."""
    import tomllib

    import tomli_w

    shutil.copytree(harness_dirs()[0], dst)
    path = dst / "expectations" / "tiny-flux.toml"
    shipped = tomllib.loads(path.read_text())
    done = subprocess.run([sys.executable, "-m", "quantgate", "propose-expectations", "--latency-margin",
                           LATENCY_MARGIN, *[str(r / "results.json") for r in runs]],
                          cwd=REPO, capture_output=True, text=True, check=True)
    proposed = tomllib.loads(done.stdout)
    added = {cls: {cfg: {"latency_ratio_max": t["latency_ratio_max"], "basis": t["basis"]}
                   for cfg, t in tables.items() if "latency_ratio_max" in t}
             for cls, tables in proposed.items() if cls not in shipped and cls.startswith("cpu-")}
    added = {cls: tables for cls, tables in added.items() if tables}
    if added:
        path.write_text(path.read_text() + "\n" + tomli_w.dumps(added))
    return dst


def ensure_built(cache: Path) -> None:
    """tiny-flux built into `cache` before a neighbour starts (the build is not what is measured)."""
    model = load_models(REPO / "fixtures")["tiny-flux"]
    ensure_synthetic(model, cache)


PLANTED = '''
"""Sessions with planted faults for some configurations (QG_PLANTED: config=fault+fault,...)."""
import os, signal, subprocess, time

import torch

from quantgate.case.session import CaseSession


def faults_of(case):
    planted = dict(item.split("=") for item in os.environ.get("QG_PLANTED", "").split(",") if item)
    return set(planted.get(case.config.id, "").split("+"))


class Planted(CaseSession):
    def load(self, *args):
        fault = faults_of(self.case)
        if "segfault" in fault:
            os.kill(os.getpid(), signal.SIGSEGV)
        if "abort" in fault:
            os.abort()
        if "hang" in fault:
            time.sleep(3600)
        if "oom" in fault:
            self.hoard = torch.ones(2 * 2**30, dtype=torch.uint8)     # 2 GiB
        if "orphan" in fault:        # a helper process that outlives the case
            subprocess.Popen(["sleep", "120"], start_new_session=True)
        info = super().load(*args)
        if "slow" in fault:
            self._slow_down()
        if "grow" in fault:          # 2 MiB more weights in the transformer
            self.pipe.transformer.register_buffer("planted", torch.zeros(2**21, dtype=torch.uint8))
            info["components"] = self.weights()
        return info

    def _slow_down(self):
        """Every transformer forward computes for twice as long (its CPU time again, spent spinning
        on this thread, as a kernel doing twice the work would): a denoising call about 2x as slow,
        whatever share of a core the process gets. (Half as long again, 1.5x, came out at 1.2-1.35x
        the ratio beside a busy neighbour, where BF16's own CPU time moved by up to 48% between runs:
        too close to the 25% a compare allows to tell a caught fault from noise.)"""
        forward = self.pipe.transformer.forward

        def slower(*args, **kwargs):
            started = time.thread_time()
            out = forward(*args, **kwargs)
            until = time.thread_time() + (time.thread_time() - started)
            while time.thread_time() < until:
                pass
            return out

        self.pipe.transformer.forward = slower

    def denoise(self):
        if "first-call" in faults_of(self.case):     # loads, then breaks at its first call (as quanto int4 on Wan)
            raise RuntimeError("planted: the first denoising call breaks")
        return super().denoise()

    def load_saved_component(self, name, folder):
        fault = faults_of(self.case)
        if "unreadable" in fault:      # what a release that cannot read the saved files meets: cut them short
            for f in folder.glob("*.safetensors"):
                f.write_bytes(f.read_bytes()[:64])
        if "dequantize" in fault:      # a reader that hands the component back in BF16, without a word
            from quantgate.case.session import _component_classes

            _, classes = _component_classes(self.model_dir)
            return classes[name][1].from_pretrained(self.model_dir, subfolder=name, dtype=torch.bfloat16)
        return super().load_saved_component(name, folder)

    def run_path(self, name, folder):
        if "recompile" in faults_of(self.case) and name == "compile" and self.pipe is not None:
            denoiser = getattr(self.pipe, self.family.denoiser)
            denoiser.planted_calls = 0

            def count_calls(module, args, kwargs):     # a Python int read in forward, new each call: a
                module.planted_calls += 1              # guard on it fails every call, as a release whose
                scale = 1.0 + 0.0 * module.planted_calls   # code specializes on a changing value would
                kwargs["hidden_states"] = kwargs["hidden_states"] * scale
                return args, kwargs

            denoiser.register_forward_pre_hook(count_calls, with_kwargs=True)
        if "lora-ignored" in faults_of(self.case) and self.pipe is not None:
            load = self.pipe.load_lora_weights

            def loaded_but_ignored(*args, **kwargs):     # the adapter is there, its scale silently 0
                load(*args, **kwargs)
                self.pipe.set_adapters([kwargs["adapter_name"]], adapter_weights=[0.0])

            self.pipe.load_lora_weights = loaded_but_ignored
        return super().run_path(name, folder)

    def generate(self, *args, **kwargs):
        out = super().generate(*args, **kwargs)
        if "drift" in faults_of(self.case):      # images drift: noise of 8 grey levels
            import numpy as np

            noise = np.random.default_rng(0)
            out["images"] = {k: np.clip(v.astype(int) + noise.integers(-8, 9, v.shape), 0, 255).astype(np.uint8)
                             for k, v in out["images"].items()}
        return out
'''


@pytest.fixture
def planted(tmp_path):
    """The environment that plants faults, for run_gate: planted("quanto-int8=segfault", ...), used with
    --qg-case-session planted_sessions:Planted."""
    (tmp_path / "planted_sessions.py").write_text(PLANTED)

    def env(*faults):
        return {"PYTHONPATH": str(tmp_path), "QG_PLANTED": ",".join(faults)}

    return env


PATH_KNOWN_UNREADABLE = """
[tiny-flux.known_failures.quanto-float8]
test = ["test_saved_checkpoint_reloads_quantized_as_it_was_saved", "test_reloaded_checkpoint_makes_the_fresh_loads_images"]
match = "Unable to load weights from checkpoint file"
reason = "planted: its saved files are cut short"
"""


@pytest.fixture(scope="session")
def planted_paths(tmp_path_factory, shared_cache):
    """One run of the regression paths' tests alone (-m paths) on four tiny-flux cases, with planted
    regressions: torchao int8's LoRA is loaded but its scale silently set to 0 (a loader that drops
    it), and its saved files are cut short before the reload (what a release that cannot read them
    meets), and its compiled denoiser reads a Python int that changes every call (it compiles again
    each call); quanto int8's reader hands its transformer back in BF16; quanto float8's files are cut
    short too, under a known failure of both round-trip tests that names the reader's error;
    torchao float8 is left alone. (quanto's LoRA on FLUX is a known failure of the matrix.) As a bump's
    base, it keeps the round trips' checkpoints in <root>/checkpoints."""
    root = tmp_path_factory.mktemp("paths")
    return planted_path_run(root, shared_cache, "paths and not (compile and quanto)",   # compile: its plant and control
                            ("torchao-int8wo", "quanto-int8", "torchao-float8wo", "quanto-float8"),
                            "torchao-int8wo=unreadable+lora-ignored+recompile,quanto-int8=dequantize,"
                            "quanto-float8=unreadable",
                            PATH_KNOWN_UNREADABLE, ("--qg-checkpoints-out", str(root / "checkpoints")))


def planted_path_run(root: Path, shared_cache: Path, selection: str, configs: tuple[str, ...], faults: str,
                     models_toml_extra: str = "", extra_args: tuple[str, ...] = ()) -> tuple[str, dict, str]:
    """One gate run of the tests marked `selection` (a path's name, or `paths` for all) on tiny-flux's
    `configs`, with the planted session and QG_PLANTED=`faults` (and `models_toml_extra` added to a
    copy of models.toml): its stdout, its records by configuration and its results.md."""
    import json
    import os

    (root / "planted_sessions.py").write_text(PLANTED)
    fixtures = root / "fixtures"
    shutil.copytree(harness_dirs()[0], fixtures)
    models = fixtures / "models.toml"
    models.write_text(models.read_text() + models_toml_extra)
    out = root / "results"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(GATE_TESTS), "-p", "no:cacheprovider", *NO_PLUGINS, "-q", "-rfExX",
         "--benchmark-disable", "-m", f"not gpu and {selection}", "--qg-cache-dir", str(shared_cache),
         "--qg-fixtures", str(fixtures), "--qg-baselines", str(harness_dirs()[1]), "--qg-results-dir", str(out),
         "--qg-no-report", "--qg-case-session", "planted_sessions:Planted", "--qg-model", "tiny-flux",
         *[a for c in configs for a in ("--qg-config", c)], *extra_args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(root), "QG_PLANTED": faults})
    records = {c["config"]: c for c in json.loads((out / "results.json").read_text())["cases"]}
    return done.stdout, records, (out / "results.md").read_text()
