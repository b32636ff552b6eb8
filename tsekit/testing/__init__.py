"""Conformance suite and fixtures for tsekit components, as a pytest plugin.

Third-party plugin authors reuse it::

    # conftest.py
    pytest_plugins = ["tsekit.testing"]

    # test_conformance.py
    import pytest
    from tsekit.testing import conformance_cases

    @pytest.mark.parametrize("case", conformance_cases(provider="myplugin"))
    def test_conformance(case):
        case.run()

Every case runs on tiny CPU tensors: encoders (declared dim, padding invariance, gradients),
fusions (shape, gradients, dependence on the embedding), backbones (paper default and presets:
exact output length, every declared site visited once in order) and every backbone site ×
every compatible fusion (forward + backward through :func:`tsekit.build`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from tsekit.registry import ComponentSpec, Registry

TEST_PRESETS = ("tiny", "small")


@dataclass
class Case:
    id: str
    check: Callable[[], None]

    def run(self) -> None:
        self.check()

    def __repr__(self) -> str:
        return self.id


def _seconds(spec_caps: Any, seconds: float) -> int:
    return max(int(spec_caps.sample_rate * seconds), 64)


def check_encoder(spec: ComponentSpec, config: Any = None) -> None:
    import torch

    config = config if config is not None else spec.make_config()
    caps = spec.capabilities_for(config)
    if caps.input == "embedding":
        return
    torch.manual_seed(0)
    enc = spec.create(config)
    assert enc.embedding_dim == caps.embedding_dim, f"built dim {enc.embedding_dim} != declared {caps.embedding_dim}"
    assert enc.sample_rate == caps.sample_rate
    n = _seconds(caps, 1.0)
    wav = torch.randn(2, n) * 0.1
    lengths = torch.tensor([n, n * 3 // 4])
    enc.train(True)
    emb = enc(wav, lengths)
    assert emb.shape == (2, caps.embedding_dim), f"output {tuple(emb.shape)}"
    assert torch.isfinite(emb).all()
    enc.eval()
    with torch.no_grad():
        padded = enc(wav, lengths)[1]
        alone = enc(wav[1:, : n * 3 // 4], None)[0]
    assert torch.allclose(padded, alone, atol=1e-4, rtol=1e-3), "embedding depends on padding beyond `lengths`"
    trainable = [p for p in enc.parameters() if p.requires_grad]
    if caps.frozen:
        assert not trainable, "a frozen encoder has trainable parameters"
    elif caps.trainable:
        enc.train(True)
        enc(wav, lengths).pow(2).sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable), "no gradient reached the encoder"


def _perturb(module: Any) -> None:
    import torch

    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)


def check_fusion(spec: ComponentSpec, config: Any = None) -> None:
    import torch

    config = config if config is not None else spec.make_config()
    caps = spec.capabilities_for(config)
    channels = 8
    emb_dim = channels if caps.dims == "equal" else 6
    for layout in caps.layouts:
        torch.manual_seed(0)
        fusion = spec.create(config, channels=channels, embedding_dim=emb_dim)
        _perturb(fusion)  # identity-at-init fusions (FiLM) are fine; test them away from init
        shape = (2, channels, 37) if layout == "BCT" else (2, channels, 5, 37)
        x = torch.randn(*shape, requires_grad=True)
        e = torch.randn(2, emb_dim, requires_grad=True)
        y = fusion(x, e)
        assert y.shape == x.shape, f"{layout}: output {tuple(y.shape)} for input {tuple(x.shape)}"
        y.pow(2).mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert e.grad is not None and e.grad.abs().sum() > 0, f"{layout}: no gradient reaches the embedding"
        with torch.no_grad():
            same = fusion(x, e)
            other = fusion(x, torch.randn(2, emb_dim))
        assert not torch.allclose(same, other), f"{layout}: output does not depend on the embedding"


class _RecordingAdapter:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def wants(self, site: str) -> bool:
        return True

    def __call__(self, site: str, x: Any) -> Any:
        self.calls.append(site)
        return x


def check_backbone(spec: ComponentSpec, preset: str | None = None, seconds: float = 0.15) -> None:
    import torch

    config = spec.make_config(preset)
    caps = spec.capabilities_for(config)
    assert caps.sites, "a backbone must declare at least one adaptation site"
    assert [s.index for s in caps.sites] == list(range(len(caps.sites))), "site indices must be 0..n-1"
    assert len({s.name for s in caps.sites}) == len(caps.sites), "site names must be unique"
    for name in caps.default_sites:
        caps.site(name)
    torch.manual_seed(0)
    model = spec.create(config)
    assert model.sample_rate == caps.sample_rate
    for n in (_seconds(caps, seconds), _seconds(caps, seconds) + 7):
        mixture = torch.randn(2, n)
        adapter = _RecordingAdapter()
        out = model(mixture, adapter)
        assert out.shape == mixture.shape, f"output {tuple(out.shape)} for a mixture of {tuple(mixture.shape)}"
        assert torch.isfinite(out).all()
        assert adapter.calls == [s.name for s in caps.sites], (
            f"sites visited {adapter.calls} differ from the declared {[s.name for s in caps.sites]}"
        )


def check_site(backbone: ComponentSpec, preset: str | None, site: str, fusion: ComponentSpec, registry: Registry) -> None:
    import torch

    from tsekit.model import build

    torch.manual_seed(0)
    emb_dim = 12
    model = build(
        "precomputed",
        fusion.qualified_name,
        backbone.qualified_name,
        site,
        preset=preset,
        encoder_options={"embedding_dim": emb_dim},
        registry=registry,
    )
    assert model.spec is not None and model.spec.adapt_layers == [site]
    n = _seconds(model.backbone.caps, 0.1)
    mixture = torch.randn(2, n)
    emb = torch.randn(2, emb_dim)
    out = model(mixture, embedding=emb)
    assert out.shape == mixture.shape
    out.pow(2).mean().backward()
    grads = [p.grad for p in model.fusions.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), "fusion got no gradient"
    _perturb(model.fusions)
    with torch.no_grad():
        a = model(mixture, embedding=emb)
        b = model(mixture, embedding=torch.randn(2, emb_dim))
    assert not torch.allclose(a, b), "the estimate does not depend on the embedding"


def _test_preset(spec: ComponentSpec) -> str | None:
    return next((p for p in TEST_PRESETS if p in spec.presets), None)


def iter_cases(registry: Registry | None = None, provider: str | None = None) -> Iterator[Case]:
    from tsekit.contracts import check_fusion_at_site
    from tsekit.registry import get_registry

    reg = registry or get_registry()

    def mine(spec: ComponentSpec) -> bool:
        return provider is None or provider in (spec.provider.plugin, spec.provider.distribution)

    def usable(spec: ComponentSpec) -> bool:
        return spec.status != "conflict"

    for spec in reg.list("encoder"):
        if mine(spec) and usable(spec):
            yield Case(f"encoder-{spec.qualified_name}", partial(check_encoder, spec))
    fusions = [s for s in reg.list("fusion") if usable(s)]
    for spec in fusions:
        if mine(spec):
            yield Case(f"fusion-{spec.qualified_name}", partial(check_fusion, spec))
    for spec in reg.list("backbone"):
        if not usable(spec):
            continue
        if mine(spec):
            yield Case(f"backbone-{spec.qualified_name}-default", partial(check_backbone, spec, None, 0.05))
            for name in spec.presets:
                yield Case(f"backbone-{spec.qualified_name}-{name}", partial(check_backbone, spec, name))
        preset = _test_preset(spec)
        caps = spec.capabilities_for(spec.make_config(preset))
        for site in caps.sites:
            for fusion in fusions:
                if not (mine(spec) or mine(fusion)):
                    continue
                if check_fusion_at_site(fusion.name, fusion.capabilities_for(), site, 12) is not None:
                    continue
                yield Case(
                    f"site-{spec.qualified_name}-{preset or 'default'}-{site.name}-{fusion.qualified_name}",
                    partial(check_site, spec, preset, site.name, fusion, reg),
                )


def conformance_cases(registry: Registry | None = None, provider: str | None = None) -> list[Any]:
    """``pytest.param`` cases for every registered component (or one provider's)."""
    return [pytest.param(c, id=c.id) for c in iter_cases(registry, provider)]


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def make_plugin_set() -> Callable[..., Any]:
    """A fresh plugin set over given plugin objects (``(name, obj)`` pairs); entry points off by default."""
    from tsekit.plugins import load_plugins

    def make(*plugins: Any, autoload: bool = False, strict: bool = False) -> Any:
        return load_plugins(*plugins, autoload=autoload, strict=strict)

    return make


@pytest.fixture
def tsekit_cli() -> Callable[..., Any]:
    """Run the CLI in-process: ``tsekit_cli(["plugins", "list", "--json"], plugin_set=None)``."""
    from typer.testing import CliRunner

    from tsekit.cli import create_app

    runner = CliRunner()

    def invoke(args: list[str], plugin_set: Any = None) -> Any:
        return runner.invoke(create_app(plugin_set), args, env={"NO_COLOR": "1", "COLUMNS": "200"})

    return invoke
