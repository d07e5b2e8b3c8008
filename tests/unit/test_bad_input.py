"""Bad input gets an error that names what is wrong, and nothing stored is lost or overwritten.

The data files are fuzzed with hypothesis: whatever a user writes into matrix.toml, models.toml or
an expectations file, loading it either succeeds or raises DataFileError naming the file; it never
crashes with another exception.
"""

import errno
import json
import os
import shutil
import tomllib

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantgate.errors import DataFileError, QuantgateError
from quantgate.matrix import load_expectations, load_matrix, load_models
from quantgate.results.record import CaseRecord, read_results, write_results
from quantgate.sources.checkpoints import resolve_checkpoint
from quantgate.sources.weightfiles import safetensors_problem

from .conftest import REPO, harness_dirs

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# values TOML can hold, small and nested
toml_values = st.recursive(
    st.one_of(st.text(max_size=12), st.integers(-10**6, 10**6), st.floats(allow_nan=False, width=32),
              st.booleans(), st.sampled_from(["none", "torchao", "cpu", "cuda", "transformer", "Int8WeightOnlyConfig",
                                               "bf16", "tiny-flux", "fox"])),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=3)),
    max_leaves=6)


def _mutate(data, draw):
    """Change one entry of a parsed data file: drop, retype or add a field somewhere in it."""
    path = []
    node = data
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    target = data
    for key in path[:-1]:
        target = target[key]
    action = draw(st.sampled_from(["drop", "replace", "add"]))
    if not path:
        if isinstance(data, dict):
            data[draw(st.text(min_size=1, max_size=8))] = draw(toml_values)
        return data
    last = path[-1]
    if action == "drop":
        del target[last]
    elif action == "replace":
        target[last] = draw(toml_values)
    elif isinstance(node, dict):
        node[draw(st.text(min_size=1, max_size=8))] = draw(toml_values)
    else:
        target[last] = draw(toml_values)
    return data


def _toml(data) -> str | None:
    try:
        return tomli_w.dumps(data)
    except (TypeError, ValueError):
        return None


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    dst = tmp_path_factory.mktemp("fuzz") / "fixtures"
    shutil.copytree(harness_dirs()[0], dst)
    return dst


def _fresh(pristine, tmp_path_factory):
    dst = tmp_path_factory.mktemp("fuzzcase") / "fixtures"
    shutil.copytree(pristine, dst)
    return dst


def _load_everything(fixtures):
    models = load_models(fixtures)
    configs = load_matrix(fixtures, models)
    for name in models:
        load_expectations(fixtures, name, configs)


@FUZZ
@given(data=st.data(), which=st.sampled_from(["matrix.toml", "models.toml", "prompts.toml",
                                               "expectations/tiny-flux.toml"]))
def test_a_mutated_data_file_loads_or_is_refused_with_its_name(pristine, tmp_path_factory, data, which):
    fixtures = _fresh(pristine, tmp_path_factory)
    path = fixtures / which
    mutated = _toml(_mutate(tomllib.loads(path.read_text()), data.draw))
    if mutated is None:
        return
    path.write_text(mutated)
    try:
        _load_everything(fixtures)
    except DataFileError as exc:
        assert str(fixtures) in str(exc)


@FUZZ
@given(blob=st.binary(max_size=200), which=st.sampled_from(["matrix.toml", "models.toml",
                                                            "expectations/tiny-flux.toml"]))
def test_a_data_file_of_arbitrary_bytes_is_refused_with_its_name(pristine, tmp_path_factory, blob, which):
    fixtures = _fresh(pristine, tmp_path_factory)
    (fixtures / which).write_bytes(blob)
    try:
        _load_everything(fixtures)
    except DataFileError as exc:
        assert which.split("/")[-1] in str(exc)


def test_unknown_model_is_named_with_what_is_known(run_gate):
    result = run_gate("--qg-model", "tiny-fluxx")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*model 'tiny-fluxx' is not in *models.toml (known: tiny-flux, flux-dev-synth)*"])


def test_unknown_backend_in_the_matrix_is_named(fixtures_copy):
    path = fixtures_copy / "matrix.toml"
    path.write_text(path.read_text().replace('backend = "quanto"', 'backend = "quantoo"', 1))
    with pytest.raises(DataFileError, match=r"field 'backend': unknown value 'quantoo' \(choose from"):
        load_matrix(fixtures_copy, load_models(fixtures_copy))


# ---------------------------------------------------------------- weight files

def _safetensors(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"a": torch.ones(64, 64), "b": torch.zeros(8)}, str(path))
    return path


def test_a_whole_safetensors_file_passes_and_a_truncated_one_is_named(tmp_path):
    path = _safetensors(tmp_path)
    assert safetensors_problem(path) is None
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    assert "truncated" in safetensors_problem(path)
    path.write_bytes(data + b"\0" * 10)
    assert "extra bytes" in safetensors_problem(path)
    path.write_bytes(data[:5])
    assert "too short" in safetensors_problem(path)


def test_a_checkpoint_with_a_truncated_weight_file_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    weights = _safetensors(folder / "transformer")
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(QuantgateError, match=r"damaged weight files, not used: .*model.safetensors: .*truncated"):
        resolve_checkpoint(str(folder))


# ---------------------------------------------------------------- results

def _record(case="tiny-flux-bf16-cpu"):
    return CaseRecord(case=case, model="tiny-flux", config="bf16", backend="none", device="cpu", components=[],
                      status="ok")


def test_a_full_disk_while_writing_results_keeps_the_last_written_set(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    write_results(folder, [_record()], {"hardware": "cpu-x86_64"}, "2026-11-26T00:00:00")
    before = (folder / "results.json").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("quantgate.io.os.replace", full)
    with pytest.raises(OSError, match="No space left"):
        write_results(folder, [_record(), _record("tiny-flux-x-cpu")], {"hardware": "cpu-x86_64"}, "2026-11-26")
    assert (folder / "results.json").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == [".results.lock", "results.json", "results.md"]
    read_results(folder / "results.json")


def test_a_results_folder_that_cannot_be_written_is_refused_before_any_case_runs(run_gate, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_gate("--qg-config", "bf16", "--qg-results-dir", str(blocker / "results"))
    assert result.ret == 4                   # usage error: nothing ran
    result.stderr.fnmatch_lines([f"*cannot write results to {blocker / 'results'}: {blocker} is a file, not a "
                                 "folder; choose a writable folder with --qg-results-dir*"])


def test_an_existing_result_set_is_never_overwritten(run_gate, tmp_path):
    folder = tmp_path / "kept"
    folder.mkdir()
    (folder / "results.json").write_text('{"kept": true}')
    result = run_gate("--qg-config", "bf16", "--qg-results-dir", str(folder))
    assert result.ret == 4
    assert json.loads((folder / "results.json").read_text()) == {"kept": True}


# ---------------------------------------------------------------- unused baselines

def test_baselines_no_test_used_are_reported_and_fail_the_session_when_asked(run_gate, baselines_copy):
    folder = baselines_copy / "tiny-flux" / "cpu-x86_64"
    for suffix in (".png", ".json"):
        shutil.copy(folder / f"fox-s0{suffix}", folder / f"dropped-prompt-s0{suffix}")
    orphan = baselines_copy / "retired-model" / "cpu-x86_64"
    orphan.mkdir(parents=True)
    failed = run_gate("--qg-config", "bf16", "-k", "test_bf16_reproduces", "--qg-unused-baselines=fail",
                      baselines=baselines_copy)
    failed.assert_outcomes(passed=1)
    assert failed.ret == 1                    # every test passed; the unused baselines fail the session
    failed.stdout.fnmatch_lines(["*3 unused baseline(s): no test of this run used them (fails the session: "
                                 "--qg-unused-baselines=fail); delete them*",
                                 f"*{folder / 'dropped-prompt-s0.json'}", f"*{folder / 'dropped-prompt-s0.png'}",
                                 f"*{orphan}"])
    assert (folder / "dropped-prompt-s0.png").exists()          # reported, never deleted


def test_a_run_that_uses_every_baseline_reports_none(unchanged_runs):
    for _, done in unchanged_runs:           # run with --qg-unused-baselines=fail: exit 0 means none
        assert done.returncode == 0 and "unused baseline" not in done.stdout


# ---------------------------------------------------------------- several writers at once

def _build_in_process(args):
    from quantgate.matrix import load_models
    from quantgate.sources.cache import BUILD_META, ensure_synthetic

    fixtures, cache = args
    folder = ensure_synthetic(load_models(fixtures)["tiny-flux"], cache)
    return os.stat(folder / BUILD_META).st_ino


def test_concurrent_builds_of_one_model_build_it_once(tmp_path):
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(3) as pool:
        inodes = pool.map(_build_in_process, [(REPO / "fixtures", tmp_path)] * 3)
    assert len(set(inodes)) == 1                       # one build; the others waited and found it
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if ".building-" in p.name]
    assert leftovers == []


def _baseline_images(fixtures, seed):
    import numpy as np

    model = load_models(fixtures)["tiny-flux"]
    rng = np.random.default_rng(seed)
    return {f"{p.id}-s{s}": rng.integers(0, 256, (model.height, model.width, 3), dtype=np.uint8)
            for p, s in model.images()}


def _write_baselines(args):
    from quantgate.matrix import reference_config
    from quantgate.results.baselines import BaselineStore

    fixtures, root, seed = args
    models = load_models(fixtures)
    reference = reference_config(load_matrix(fixtures, models))
    for _ in range(5):
        BaselineStore(root).write_set(models["tiny-flux"], reference, "cpu-x86_64", _baseline_images(fixtures, seed),
                                      {"hardware": "cpu-x86_64"})


def test_concurrent_baseline_regenerations_leave_one_whole_set(tmp_path):
    import multiprocessing

    import numpy as np

    from quantgate.results.baselines import BaselineStore

    root = tmp_path / "baselines"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        pool.map(_write_baselines, [(REPO / "fixtures", root, seed) for seed in range(3)])
    model = load_models(REPO / "fixtures")["tiny-flux"]
    store = BaselineStore(root)
    found = {f"{p.id}-s{s}": store.load(model, "cpu-x86_64", p, s, "cpu") for p, s in model.images()}
    writers = [seed for seed in range(3)
               if all(np.array_equal(found[k], v) for k, v in _baseline_images(REPO / "fixtures", seed).items())]
    assert len(writers) == 1                      # every image of the set is from one and the same writer
    assert [p.name for p in (root / "tiny-flux").iterdir() if not p.name.startswith(".")] == ["cpu-x86_64"]
    assert not [p for p in (root / "tiny-flux").iterdir() if ".new-" in p.name or ".old-" in p.name]
