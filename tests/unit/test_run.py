"""A case's life in its process, for the paths that also run on a CPU."""

from dataclasses import replace

import pytest

from quantgate.case.session import CaseSession, CudaPhase, session_class
from quantgate.matrix import Case, load_matrix, load_models
from quantgate.sources.cache import ensure_synthetic

from .conftest import REPO


@pytest.fixture(scope="module")
def tiny_and_configs():
    models = load_models(REPO / "fixtures")
    return models["tiny-flux"], {c.id: c for c in load_matrix(REPO / "fixtures", models)}


def test_fp8_layerwise_casting_stores_the_transformer_in_one_byte_per_weight(tiny_and_configs, shared_cache):
    tiny, configs = tiny_and_configs
    config = replace(configs["layerwise-fp8"], devices=("cpu",))
    session = CaseSession(Case(tiny, config, "cpu"), str(ensure_synthetic(tiny, shared_cache)), str(shared_cache))
    info = session.load()
    reference = CaseSession(Case(tiny, configs["bf16"], "cpu"), str(ensure_synthetic(tiny, shared_cache)),
                            str(shared_cache)).load()
    held = info["components"]["transformer"]
    assert held["quantized_tensors"] > 0
    # the Linear and norm weights become float8 (1 byte); embeddings and biases stay bfloat16
    assert 0.5 < held["bytes"] / reference["components"]["transformer"]["bytes"] < 0.7
    assert info["memory"] == {}                        # no CUDA allocator on a CPU


def test_cuda_phase_records_nothing_on_a_cpu():
    into = {}
    with CudaPhase("cpu", "load", into):
        pass
    assert into == {}


def test_session_class_must_be_a_case_session():
    assert session_class("quantgate.case.session:CaseSession") is CaseSession
    with pytest.raises(TypeError, match="not a subclass of quantgate.case.session.CaseSession"):
        session_class("quantgate.matrix:Case")
    with pytest.raises(ValueError, match="'module:Class'"):
        session_class("quantgate.case.session.CaseSession")

