"""BSRNN backbone: WeSep's band plan and size, exact STFT round trip, every site reaching the output."""

import pytest
import torch

from tsekit.errors import ConfigError
from tsekit.nn import Adapter, count_parameters
from tsekit.plugins import load_plugins
from tsekit_builtin import bsrnn


@pytest.fixture(scope="module")
def spec():
    return load_plugins(("bsrnn", bsrnn)).registry.get("backbone", "bsrnn")


def lstm_block_params(n: int, h: int) -> int:
    """GroupNorm + BLSTM(n → h per direction) + Linear(2h → n)."""
    return 2 * n + 2 * (4 * h * (n + h) + 8 * h) + 2 * h * n + n


def test_wesep_band_plan_and_parameter_count(spec):
    config = spec.make_config()
    widths = config.bands()
    assert widths == (3,) * 15 + (6,) * 10 + (16,) * 5 + (64, 8)  # WeSep at 16 kHz, win 512
    assert sum(widths) == 257
    n, r, h, m = 128, 6, 256, 4 * 128
    split = sum(4 * w + 2 * w * n + n for w in widths)
    mask = sum(2 * n + (n * m + m) + (m * m + m) + (m * 4 * w + 4 * w) for w in widths)
    expected = split + 2 * r * lstm_block_params(n, h) + mask
    assert count_parameters(spec.create(config)) == expected == 21_402_376


def test_presets(spec):
    assert 1e6 <= count_parameters(spec.create(spec.make_config("small"))) <= 3e6
    eight = spec.make_config("8k")
    assert eight.sample_rate == 8000 and sum(eight.bands()) == eight.win // 2 + 1
    caps = spec.capabilities_for(spec.make_config())
    assert [s.name for s in caps.sites] == ["bandsplit"] + [f"repeat.{i}" for i in range(6)]
    assert caps.default_sites == ("bandsplit",) and caps.default_fusion == "multiply"
    assert all(s.layout == "BCFT" and s.dim == 128 for s in caps.sites)


@pytest.mark.parametrize(
    "bad", [{"band_counts": (15, 10)}, {"band_widths_hz": (4000,), "band_counts": (3,)}, {"hop": 300}]
)
def test_invalid_config(spec, bad):
    with pytest.raises(ConfigError):
        spec.make_config(None, bad)


@pytest.mark.parametrize("length", [1, 100, 1601])
def test_unit_mask_reconstructs_mixture(spec, length):
    torch.manual_seed(0)
    net = spec.create(spec.make_config("tiny"))
    with torch.no_grad():
        for width, head in zip(net.widths, net.mask, strict=True):
            last = head[-1]
            last.weight.zero_()
            last.bias.copy_(torch.cat([torch.ones(width), torch.zeros(width), torch.full((2 * width,), 40.0)]))
        x = torch.randn(2, length)
        assert torch.allclose(net(x, Adapter()), x, atol=1e-4)


class OneSite(Adapter):
    def __init__(self, site):
        self.site, self.shapes = site, []

    def wants(self, site):
        return site == self.site

    def __call__(self, site, x):
        self.shapes.append(tuple(x.shape))
        return x + 1.0 if site == self.site else x


def test_every_site_changes_output(spec):
    torch.manual_seed(0)
    config = spec.make_config("tiny")
    net = spec.create(config).eval()
    x = torch.randn(2, 1600)
    frames = 1600 // config.hop + 1
    with torch.no_grad():
        plain = net(x, Adapter())
        for site in net.sites:
            adapter = OneSite(site.name)
            out = net(x, adapter)
            assert adapter.shapes == [(2, config.feature_dim, len(config.bands()), frames)]
            assert not torch.allclose(out, plain), site.name
