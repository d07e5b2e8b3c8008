"""tiny-flux: a real FluxPipeline, built offline, the same bytes and images on every build."""

import json

import numpy as np
import pytest
import torch

from quantgate.matrix import load_models
from quantgate.sources.cache import BUILD_META, ensure_synthetic
from quantgate.sources.synthetic import build_clip_tokenizer, build_t5_tokenizer, init_weights

from .conftest import REPO


@pytest.fixture(scope="module")
def tiny():
    return load_models(REPO / "fixtures")["tiny-flux"]


@pytest.fixture(scope="module")
def built(tiny, shared_cache):
    return ensure_synthetic(tiny, shared_cache)


def test_tokenizers_have_their_whole_vocabulary():
    clip = build_clip_tokenizer(77)
    assert len(clip) == 2 + 2 * 256
    t5 = build_t5_tokenizer(["fox", "snow"], 512)
    assert len(t5) > 90                        # specials + characters + words, not specials only
    ids = t5("a fox in snow")["input_ids"]
    assert t5.unk_token_id not in ids and ids[-1] == t5.eos_token_id


def test_pipeline_has_flux_components(built):
    index = json.loads((built / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    assert index["transformer"] == ["diffusers", "FluxTransformer2DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["text_encoder_2"] == ["transformers", "T5EncoderModel"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]


def test_every_linear_input_fits_4bit_groups_and_gguf_blocks(built):
    from diffusers import FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    for cls, sub in ((FluxTransformer2DModel, "transformer"), (T5EncoderModel, "text_encoder_2"),
                     (CLIPTextModel, "text_encoder")):
        model = cls.from_pretrained(built, subfolder=sub)
        sizes = {m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear)}
        assert sizes and all(s % 64 == 0 for s in sizes), (sub, sorted(sizes))


def test_rebuild_gives_the_same_bytes(tiny, built, tmp_path):
    again = ensure_synthetic(tiny, tmp_path / "other-cache")
    first = json.loads((built / BUILD_META).read_text())["sha256"]
    second = json.loads((again / BUILD_META).read_text())["sha256"]
    assert first == second and len(first) == 4


def test_weights_do_not_depend_on_the_global_generator():
    a, b = torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)
    torch.manual_seed(1)
    init_weights(a, "transformer", 0)
    torch.manual_seed(2)
    init_weights(b, "transformer", 0)
    assert torch.equal(a.weight, b.weight)
    c = torch.nn.Linear(64, 64)
    init_weights(c, "transformer", 1)
    assert not torch.equal(a.weight, c.weight)


def test_same_images_on_every_build(tiny, built, tmp_path):
    from quantgate.case.session import CaseSession
    from quantgate.matrix import Case, load_matrix, reference_config

    reference = reference_config(load_matrix(REPO / "fixtures", {"tiny-flux": tiny}))
    case = Case(tiny, reference, "cpu")
    rebuilt = ensure_synthetic(tiny, tmp_path / "third-cache")
    images = []
    for folder in (built, rebuilt):
        session = CaseSession(case, str(folder), str(tmp_path))
        session.load()
        images.append(session.generate()["images"])
    assert images[0].keys() == images[1].keys()
    for key in images[0]:
        assert np.array_equal(images[0][key], images[1][key])
        assert images[0][key].shape == (tiny.height, tiny.width, 3)
        assert images[0][key].std() > 20      # an image with structure, not a flat field
