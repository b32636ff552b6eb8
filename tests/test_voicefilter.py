"""VoiceFilter backbone: sizes against the paper, site shapes, exact length, mask/iSTFT path."""

import pytest
import torch

import tsekit_builtin.voicefilter as vf
from tsekit.nn import Adapter, count_parameters
from tsekit.plugins import load_plugins


@pytest.fixture(scope="module")
def spec():
    return load_plugins(("voicefilter", vf)).registry.get("backbone", "voicefilter")


class ShapeAdapter(Adapter):
    def __init__(self):
        self.shapes = {}

    def wants(self, site):
        return True

    def __call__(self, site, x):
        self.shapes[site] = tuple(x.shape)
        return x


def test_paper_config_and_sizes(spec):
    cfg = spec.make_config()
    caps = spec.capabilities_for(cfg)
    assert (cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.n_freq) == (1200, 400, 160, 601)
    assert caps.default_sites == ("lstm_in",) and caps.default_fusion == "add"
    assert caps.site("lstm_in").dim == 8 * 601 and caps.site("lstm_out").dim == 800
    with torch.device("meta"):  # sizes only: skip initialising 18 M parameters
        model = spec.create(cfg)
        small = spec.create(spec.make_config("small"))
    # maum-ai's VoiceFilter minus the d-vector columns of the LSTM input weights (2 directions × 4·400 × 256).
    maum_ai = 18_876_001
    assert count_parameters(model) == maum_ai - 2 * 4 * 400 * 256
    assert 1_000_000 <= count_parameters(small) <= 3_000_000


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_sites_match_declared_shapes(spec, preset):
    cfg = spec.make_config(preset)
    caps = spec.capabilities_for(cfg)
    adapter = ShapeAdapter()
    frames = 1 + 4
    spec.create(cfg)(torch.randn(2, 4 * cfg.hop_length - 3), adapter)
    assert list(adapter.shapes) == [s.name for s in caps.sites]
    for site in caps.sites:
        shape = adapter.shapes[site.name]
        expected = (2, site.dim, cfg.n_freq, frames) if site.layout == "BCFT" else (2, site.dim, frames)
        assert shape == expected, site.name


@pytest.mark.parametrize("length", [1, 31, 32, 33, 257])
def test_exact_length(spec, length):
    model = spec.create(spec.make_config("tiny"))
    assert model(torch.randn(3, length), Adapter()).shape == (3, length)


def test_open_mask_returns_the_mixture(spec):
    model = spec.create(spec.make_config("tiny")).eval()
    with torch.no_grad():
        model.fc2.bias.fill_(30.0)  # sigmoid ≈ 1 everywhere
        mixture = torch.randn(2, 1001)
        estimate, mask, mix_spec = model.separate(mixture, Adapter())
    assert mask.shape == mix_spec.shape == (2, 33, 1 + 1024 // 32)
    torch.testing.assert_close(estimate, mixture, atol=1e-4, rtol=1e-4)


def test_config_validation(spec):
    with pytest.raises(Exception, match="win_length"):
        spec.make_config(None, {"win_length": 2000})
    with pytest.raises(Exception, match="compress"):
        spec.make_config(None, {"compress": 0})
