"""Spectron backbone: sizes against the official code, site layouts, segmentation, every site matters."""

import pytest
import torch

import tsekit_builtin.spectron as sp
from tsekit.model import build
from tsekit.nn import Adapter, count_parameters
from tsekit.plugins import load_plugins
from tsekit_builtin import core, fusions
from tsekit_builtin.spectron.modules import overlap_add, segment


@pytest.fixture(scope="module")
def registry():
    return load_plugins(("core", core), ("fusions", fusions), ("spectron", sp)).registry


@pytest.fixture(scope="module")
def spec(registry):
    return registry.get("backbone", "spectron")


class ShapeAdapter(Adapter):
    def __init__(self, bump=None):
        self.shapes, self.bump = {}, bump

    def wants(self, site):
        return True

    def __call__(self, site, x):
        self.shapes[site] = tuple(x.shape)
        return x + 0.5 if site == self.bump else x


def test_paper_config_and_sizes(spec):
    cfg = spec.make_config()
    caps = spec.capabilities_for(cfg)
    assert (cfg.sample_rate, cfg.n_filters, cfg.kernel_size, cfg.stride) == (8000, 64, 16, 8)
    assert (cfg.n_heads, cfg.ff_hid, cfg.chunk_size, cfg.n_repeats, cfg.ffn) == (8, 256, 100, 6, "lstm")
    assert caps.default_sites == ("bottleneck",) and caps.default_fusion == "concat"
    with torch.device("meta"):
        model = spec.create(cfg)
        small = spec.create(spec.make_config("small"))
    # tatban/Spectron (asteroid DPTransformer, 64 filters, 8 heads, LSTM 256): 8,545,409 parameters including
    # its concat conditioner Conv1d(64 + 256 → 64); here that conditioner is the concat fusion and we add
    # the 1×1 bottleneck (64 → 64) that asteroid skips when the width is divisible by the heads.
    official, conditioner, bottleneck = 8_545_409, (64 + 256) * 64 + 64, 64 * 64 + 64
    assert count_parameters(model) == official - conditioner + bottleneck == 8_529_025
    assert 1_000_000 <= count_parameters(small) <= 3_000_000


def test_default_build_matches_official_count(registry):
    with torch.device("meta"):
        model = build("precomputed", None, "spectron", encoder_options={"embedding_dim": 256}, registry=registry)
    assert model.spec.fusion == "concat" and model.spec.adapt_layers == ["bottleneck"]
    assert model.parameter_counts()["total"] == 8_545_409 + 64 * 64 + 64


@pytest.mark.parametrize("frames", [1, 3, 9, 10, 37, 250])
@pytest.mark.parametrize("chunk", [2, 4, 10])
def test_segment_overlap_add_roundtrip(frames, chunk):
    x = torch.randn(2, 3, frames)
    chunks = segment(x, chunk)
    assert chunks.shape[:3] == (2, 3, chunk)
    assert torch.allclose(overlap_add(chunks, frames), x)


@pytest.mark.parametrize("length", [1, 7, 800, 1237])
def test_sites_layouts_and_length(spec, length):
    cfg = spec.make_config("tiny")
    torch.manual_seed(0)
    model = spec.create(cfg)
    adapter = ShapeAdapter()
    out = model(torch.randn(2, length), adapter)
    assert out.shape == (2, length)
    names = [s.name for s in model.sites]
    assert names == ["bottleneck", "block.0", "block.1"] and list(adapter.shapes) == names
    frames = adapter.shapes["bottleneck"][-1]
    assert adapter.shapes["bottleneck"] == (2, cfg.bn_chan, frames)
    n_chunks = -(-frames // (cfg.chunk_size // 2)) + 1
    for name in names[1:]:
        assert adapter.shapes[name] == (2, cfg.bn_chan, cfg.chunk_size, n_chunks)
    assert [s.layout for s in model.sites] == ["BCT", "BCFT", "BCFT"]


@pytest.mark.parametrize("ffn", ["lstm", "linear"])
def test_every_site_changes_the_output(spec, ffn):
    torch.manual_seed(0)
    model = spec.create(spec.make_config("tiny", {"ffn": ffn})).eval()
    x = torch.randn(1, 800)
    with torch.no_grad():
        base = model(x, Adapter())
        for site in model.sites:
            assert not torch.allclose(model(x, ShapeAdapter(bump=site.name)), base), site.name


def test_tiny_trains(spec):
    torch.manual_seed(0)
    model = spec.create(spec.make_config("tiny"))
    out = model(torch.randn(2, 800), Adapter())
    out.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_config_validation():
    with pytest.raises(ValueError):
        sp.SpectronConfig(chunk_size=11)
    with pytest.raises(ValueError):
        sp.SpectronConfig(bn_chan=60, n_heads=8)
    with pytest.raises(ValueError):
        sp.SpectronConfig(stride=32)
