"""SpEx+ backbone: paper sizes, multi-scale encoder, scale outputs, sites."""

import pytest
import torch

from tsekit.model import build
from tsekit.nn import Adapter, count_parameters
from tsekit.plugins import load_plugins
from tsekit_builtin import core, fusions, spexplus


@pytest.fixture(scope="module")
def registry():
    return load_plugins(("core", core), ("fusions", fusions), ("spexplus", spexplus)).registry


def make(registry, preset=None, **overrides):
    spec = registry.get("backbone", "spexplus")
    return spec.create(spec.make_config(preset, overrides))


def test_paper_parameter_count(registry):
    # Encoders, cLN, 1×1 conv, 32 TCN blocks (B=256, H=512), 3 masks, 3 decoders.
    assert count_parameters(make(registry)) == 9_073_987
    # With the paper's concat at the 4 stack heads (D=256), the cue's projection replaces the extra
    # D×H weights of SpEx+'s speaker blocks (524,288): 9.60 M, + the 1.51 M ResNet speaker encoder ≈ 11.1 M.
    model = build("precomputed", None, "spexplus", encoder_options={"embedding_dim": 256}, registry=registry)
    assert model.spec.adapt_layers == ["tcn.0", "tcn.8", "tcn.16", "tcn.24"]
    assert model.spec.fusion == "concat"
    assert count_parameters(model) == 9_073_987 + 4 * (512 * 256 + 256)


def test_small_preset_size(registry):
    assert 1e6 < count_parameters(make(registry, "small")) < 3e6


@pytest.mark.parametrize("length", [1, 7, 20, 21, 333])
def test_encode_and_scales(registry, length):
    torch.manual_seed(0)
    model = make(registry, "tiny")
    wav = torch.randn(2, length)
    feats = model.encode(wav)
    assert feats.shape == (2, 3 * 16, model.num_frames(length))
    assert (feats >= 0).all()
    out = model(wav, Adapter())
    assert out.shape == wav.shape
    assert model.last_scales.shape == (2, 3, length)
    assert torch.equal(model.last_scales[:, 0], out)


def test_frames_match_paper_grid(registry):
    model = make(registry)
    # 4 s at 8 kHz, L1=20, hop 10: (32000 - 20) / 10 + 1 frames, no padding needed.
    assert model.num_frames(32000) == 3199
    assert model.num_frames(32001) == 3200


def test_scales_differ_and_get_gradients(registry):
    torch.manual_seed(0)
    model = make(registry, "tiny")
    wav = torch.randn(1, 400)
    model(wav, Adapter())
    scales = model.last_scales
    assert not torch.allclose(scales[:, 0], scales[:, 1]) and not torch.allclose(scales[:, 1], scales[:, 2])
    scales[:, 2].pow(2).sum().backward()
    assert model.decoders[2].weight.grad.abs().sum() > 0
    assert model.encoders[2].weight.grad.abs().sum() > 0


def test_default_sites_follow_stacks(registry):
    caps = registry.capabilities("backbone", "spexplus", spexplus.SpExPlusConfig(n_blocks=5, n_stacks=3))
    assert len(caps.sites) == 15
    assert caps.default_sites == ("tcn.0", "tcn.5", "tcn.10")
    assert all(s.dim == 256 for s in caps.sites)


def test_invalid_configs():
    with pytest.raises(ValueError):
        spexplus.SpExPlusConfig(middle_window=10)
    with pytest.raises(ValueError):
        spexplus.SpExPlusConfig(stride=30)
    with pytest.raises(ValueError):
        spexplus.SpExPlusConfig(causal=True)
