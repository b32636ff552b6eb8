"""Configs, presets, capabilities and adaptation-site placement."""

from __future__ import annotations

import pytest

import tsekit
from tsekit.contracts import BackboneCaps, Site, resolve_placement
from tsekit.errors import ConfigError, PlacementError, UnknownComponentError


@pytest.fixture(scope="module")
def reg():
    return tsekit.get_registry()


def test_config_defaults_presets_and_coercion(reg) -> None:
    spec = reg.get("backbone", "speakerbeam")
    default = spec.make_config()
    assert (default.sample_rate, default.n_filters, default.kernel_size, default.stride) == (8000, 512, 16, 8)
    assert (default.n_blocks, default.n_repeats, default.bn_chan, default.adapt_layer) == (8, 3, 128, 7)
    small = spec.make_config("small", {"n_blocks": "4", "causal": "true", "norm": "cLN"})
    assert (small.sample_rate, small.n_blocks, small.causal, small.norm) == (16000, 4, True, "cLN")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_blokcs": 4}, "unknown option. Did you mean 'n_blocks'"),
        ({"n_blocks": "four"}, "expected an integer, got 'four'"),
        ({"norm": "LN"}, "must be one of 'gLN', 'cLN', 'BN'"),
        ({"causal": "maybe"}, "expected a boolean"),
        ({"stride": 32}, "stride (32) must not exceed kernel_size (16)"),
        ({"causal": True}, "a causal model cannot use gLN"),
    ],
)
def test_bad_config_is_refused_with_reason(reg, overrides, message) -> None:
    with pytest.raises(ConfigError) as err:
        reg.make_config("backbone", "speakerbeam", overrides=overrides)
    assert message in str(err.value)
    assert str(err.value).startswith("backbone 'speakerbeam'")


def test_unknown_preset(reg) -> None:
    with pytest.raises(UnknownComponentError, match=r"Unknown preset of backbone 'speakerbeam' 'smal'\. Did you mean 'small'"):
        reg.make_config("backbone", "speakerbeam", "smal")


def test_capabilities_follow_config(reg) -> None:
    caps = reg.capabilities("backbone", "speakerbeam", reg.make_config("backbone", "speakerbeam", "small"))
    assert caps.domain == "time" and caps.sample_rate == 16000 and not caps.causal
    assert len(caps.sites) == 16 and caps.default_sites == ("tcn.7",)
    assert caps.sites[7].dim == 128 + 128 and caps.default_fusion == "multiply"
    enc = reg.capabilities("encoder", "dvector")
    assert (enc.embedding_dim, enc.sample_rate, enc.frozen, enc.trainable) == (256, 16000, True, False)
    assert reg.capabilities("encoder", "dvector", reg.make_config("encoder", "dvector", overrides={"frozen": False})).trainable
    assert reg.capabilities("fusion", "multiply", reg.make_config("fusion", "multiply", overrides={"project": False})).dims == "equal"


CAPS = BackboneCaps(
    domain="time",
    sample_rate=8000,
    causal=False,
    sites=tuple(Site(f"block.{i}", i, 16) for i in range(6)),
    default_sites=("block.3",),
)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (None, [3]),
        ("default", [3]),
        ("first", [0]),
        ("last", [5]),
        ("all", [0, 1, 2, 3, 4, 5]),
        ("every:2", [0, 2, 4]),
        (4, [4]),
        ("-2", [4]),
        ("1,block.4,1", [1, 4]),
        ([5, "first"], [0, 5]),
        ("none", []),
    ],
)
def test_placement_grammar(request_, expected) -> None:
    assert [s.index for s in resolve_placement(request_, CAPS)] == expected


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ("6", "adaptation layer 6 is out of range: this backbone has 6 sites (0..5)"),
        ("blok.2", "unknown adaptation site 'blok.2'. Did you mean 'block.2'"),
        ("every:0", "every:N needs a positive integer"),
        ("", "empty adaptation-layer request"),
    ],
)
def test_placement_refusals(request_, message) -> None:
    with pytest.raises(PlacementError) as err:
        resolve_placement(request_, CAPS)
    assert message in str(err.value)
