"""The pytest plugin (entry point `quantgate`): options, markers, matrix parametrization, fixtures.

Tests ask for one of three case fixtures, each parametrized over the matrix:
  qg_case            every case            qg_quantized_case   every non-reference case
  qg_reference_case  the BF16 reference cases
and for `qg`, the session's gateway to loading, measuring and judging a case.
"""

from __future__ import annotations

import os

import pytest

from quantgate.gate.session import AFTER_CASE, GateSession
from quantgate.matrix import Case, markers

PATHS_MARKER = "paths"     # -m "not paths": the gate without its regression paths


def pytest_addoption(parser):
    group = parser.getgroup("quantgate", "quantgate: regression gate for quantized diffusion pipelines")
    group.addoption("--qg-fixtures", help="folder with models.toml, prompts.toml, matrix.toml, "
                    "expectations/ (default: ini qg_fixtures, 'fixtures')")
    group.addoption("--qg-baselines", help="baseline folder (default: ini qg_baselines, 'baselines')")
    group.addoption("--qg-cache-dir", help="where synthetic models and GGUF files are built "
                    "(default: $QUANTGATE_CACHE_DIR or ~/.cache/quantgate)")
    group.addoption("--qg-scratch-dir", help="where regression paths write their files (the round trip's saved "
                    "checkpoints, as large as the quantized components; emptied after each case; default: "
                    "$QUANTGATE_SCRATCH_DIR or <cache dir>/paths)")
    group.addoption("--qg-checkpoints-out", help="keep each round trip's saved quantized checkpoint in this store, "
                    "under the stack's key (a bump's base: tox -e bump-current), for a later run to read")
    group.addoption("--qg-checkpoints-in", help="the checkpoint store a bump's base wrote: the previous path loads "
                    "each case's checkpoint from it and holds it against the base's bytes and images (tox -e bump-candidate)")
    group.addoption("--qg-results-dir", help="folder for this run's results (default: a new "
                    ".quantgate/results/<time> folder; an existing result set is never overwritten)")
    group.addoption("--qg-model", action="append", default=[],
                    help="run only this model (repeatable): a name from models.toml, or a checkpoint: a local "
                    "diffusers folder or a hub id in the local Hugging Face cache (never downloaded)")
    group.addoption("--qg-model-settings", help="the models.toml model whose generation settings, devices and "
                    "configurations a checkpoint runs with (default: flux-dev-synth)")
    group.addoption("--qg-config", action="append", default=[],
                    help="run only this backend configuration id from matrix.toml (repeatable)")
    group.addoption("--qg-shard", metavar="I/N", help="run shard I of N of the selected cases (deterministic: "
                    "quantized cases dealt out in matrix order); merge the shards with quantgate merge-results")
    group.addoption("--qg-isolation", choices=("process", "inline"), default="process",
                    help="run each case in its own process (default) or in the pytest process")
    group.addoption("--qg-case-session", help="'module:Class' that loads and measures a case in its process: "
                    "quantgate.case.session:CaseSession (default) or a subclass, for pipelines of your own")
    group.addoption("--qg-run-name", help="save results under .quantgate/runs/NAME/<time>-<pid>, and point "
                    ".quantgate/runs/NAME/latest at them (for `quantgate compare`: the current lock, a candidate)")
    group.addoption("--qg-no-report", action="store_true",
                    help="do not write report.html and report.md beside the results (they take a few seconds)")
    group.addoption("--qg-unused-baselines", choices=("report", "fail"), default="report",
                    help="baselines that no test of the run used, in the folders it used (and baseline folders of "
                    "models that no longer exist, when no --qg-model narrows the run): list them (report, "
                    "default) or also fail the session (fail)")
    group.addoption("--qg-allow-missing-backends", action="store_true",
                    help="skip, rather than fail, cases whose backend cannot be imported")
    parser.addini("qg_fixtures", "quantgate fixtures folder", default="fixtures")
    parser.addini("qg_baselines", "quantgate baselines folder", default="baselines")
    parser.addini("qg_benchmark_per_class", "keep pytest-benchmark's storage per hardware class "
                  "(<storage>/<class>/...), so --benchmark-compare compares like with like", type="bool", default=False)


def pytest_configure(config):
    for name, text in markers().items():
        config.addinivalue_line("markers", f"{name}: {text}")
    from quantgate.families import family, names

    for name in names():
        config.addinivalue_line("markers", f"{name}: cases of the {family(name).pipeline} family")
    from quantgate.paths import names as path_names
    from quantgate.paths import path

    for name in path_names():
        config.addinivalue_line("markers", f"{name}: the {name} regression path ({path(name).description})")
    config.addinivalue_line("markers", f"{PATHS_MARKER}: every regression path's tests (each also carries its path's name)")
    config.addinivalue_line("markers", f"{AFTER_CASE}: runs after every other test of its case (closes the case)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")       # no hub at test time, in every case process
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if config.getini("qg_benchmark_per_class"):
        from quantgate.gate.benchmarking import storage_per_class

        storage_per_class(config)          # before pytest-benchmark's own configure (trylast) reads it
    from quantgate.gate.xdist import is_controller, is_worker, pin_worker

    if is_worker(config):
        pin_worker(config)                 # before anything in this worker starts CUDA
        # the controller schedules by xdist_group; its worker must tag the tests with their group
        config.option.loadgroup = bool(getattr(config.option, "loadgroup", False)
                                       or config.workerinput.get("qg_loadgroup"))
    elif is_controller(config) and config.option.dist == "load":
        config.option.dist = "loadgroup"   # all tests of a case on one worker (xdist_group per case)
    config.pluginmanager.register(GateSession(config), "quantgate-session")


def pytest_itemcollected(item):
    """A regression path's test (marked with its path's name) also carries PATHS_MARKER, before -m selects."""
    from quantgate.paths import names as path_names

    if any(item.get_closest_marker(name) for name in path_names()):
        item.add_marker(PATHS_MARKER)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    """GPU, driver, CUDA, hardware class and library versions in pytest-benchmark's machine_info
    (read in the case processes, so the pytest process never touches CUDA)."""
    gate = config.pluginmanager.get_plugin("quantgate-session")
    env = gate.environment_of_cases() if gate is not None else None
    if env:
        machine_info["quantgate"] = {k: env.get(k) for k in ("hardware", "cpu_class", "gpu", "driver", "cuda", "cpu", "cores",
                                                               "packages")}


@pytest.fixture(scope="session")
def qg(request) -> GateSession:
    """The gate's session: load cases, read their measurements, baselines and expectations."""
    return request.config.pluginmanager.get_plugin("quantgate-session")


@pytest.fixture
def qg_case(request) -> Case:
    """One case of the matrix (model x backend configuration x device)."""
    return request.param


@pytest.fixture
def qg_quantized_case(request) -> Case:
    """One case whose configuration quantizes something."""
    return request.param


@pytest.fixture
def qg_reference_case(request) -> Case:
    """One BF16 reference case."""
    return request.param


@pytest.fixture
def qg_cuda_case(request) -> Case:
    """One case that runs on a CUDA device."""
    return request.param
