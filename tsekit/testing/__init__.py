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

Every case runs on tiny CPU tensors, for the default config and every preset: declarations (configs,
capabilities, sites, default fusion; as ``tsekit plugins check``), encoders (declared dim, padding
invariance, gradients), fusions (shape, gradients, dependence on the embedding), backbones (exact output
length, every declared site visited once in order), selectors (a :class:`~tsekit.nn.Selection` of valid
pieces), losses (a finite scalar with gradients; missing extras refused), metrics (the
:mod:`tsekit.metrics` interface, scoring bundled speech) and every backbone site × every compatible
fusion (forward + backward through :func:`tsekit.build`). A name that several plugins register without
an override is a failing ``clash-`` case.
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

    def select(self, sources: Any) -> Any:
        return sources[:, 0]


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


SITE_EMBEDDING_DIM = 12
"""The size of the precomputed embeddings a site check feeds a fusion with."""


def _site_plan(backbone: ComponentSpec, preset: str | None, site: str, fusion: ComponentSpec, registry: Registry) -> Any:
    """The plan of a site check's model: precomputed embeddings, ``fusion`` at ``site`` alone."""
    from tsekit.plan import plan

    return plan("precomputed", fusion.qualified_name, backbone.qualified_name, site, preset=preset,
                encoder_options={"embedding_dim": SITE_EMBEDDING_DIM}, registry=registry)


def check_site(backbone: ComponentSpec, preset: str | None, site: str, fusion: ComponentSpec, registry: Registry) -> None:
    import torch

    from tsekit.model import assemble

    torch.manual_seed(0)
    emb_dim = SITE_EMBEDDING_DIM
    model = assemble(_site_plan(backbone, preset, site, fusion, registry))
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


def _toy_embed(wav: Any, lengths: Any) -> Any:
    """A stand-in speaker encoder for selectors: a fixed projection of each valid part's magnitude spectrum."""
    import torch

    projection = torch.randn(129, 16, generator=torch.Generator().manual_seed(0))
    rows = []
    for row, length in zip(wav, lengths.tolist(), strict=True):
        frames = row[: max(int(length) // 256, 1) * 256].reshape(-1, 256)
        rows.append(torch.fft.rfft(frames, dim=-1).abs().mean(0) @ projection)
    return torch.stack(rows)


def check_selector(spec: ComponentSpec, config: Any = None) -> None:
    import torch

    from tsekit.nn import ReferenceSelector, Selection

    selector = spec.create(config)
    assert isinstance(selector, ReferenceSelector), f"built a {type(selector).__name__}, not a ReferenceSelector"
    generator = torch.Generator().manual_seed(0)
    for seconds in ((1.0,), (0.6, 1.5, 5.0)):
        refs = [torch.randn(int(16000 * s), generator=generator) * 0.1 for s in seconds]
        selection = selector.select(refs, _toy_embed, sample_rate=16000)
        assert isinstance(selection, Selection), f"select() returned a {type(selection).__name__}, not a Selection"
        assert selection.embedding.shape == (16,), f"embedding {tuple(selection.embedding.shape)}, expected (16,)"
        assert torch.isfinite(selection.embedding).all()
        assert selection.kept, "no piece kept"
        for index, start, end in selection.kept + selection.dropped:
            assert 0 <= index < len(refs) and 0 <= start < end <= refs[index].numel(), (index, start, end)


def _loss_extras(target: Any) -> dict[str, Any]:
    import torch

    batch, length = target.shape
    return {
        "mixture": target + torch.randn_like(target),
        "scales": torch.randn(batch, 3, length, requires_grad=True),
        "sources": torch.randn(batch, 2, length, requires_grad=True),
        "speaker_logits": torch.randn(batch, 5, requires_grad=True),
        "speaker_ids": torch.arange(batch),
        "sample_rate": 16000,
        "embedding": torch.randn(batch, 3),
        "reencode": lambda wav: torch.stack([wav.mean(-1), wav.pow(2).mean(-1), wav[..., ::2].mean(-1)], -1),
        "step": 0,
    }


def check_loss(spec: ComponentSpec, config: Any = None) -> None:
    import torch

    from tsekit.errors import TsekitError

    torch.manual_seed(0)
    loss = spec.create(config)
    target = torch.randn(2, 1600)
    estimate = (target + torch.randn_like(target)).requires_grad_()
    extras = _loss_extras(target)
    value = loss(estimate, target, **extras)
    assert isinstance(value, torch.Tensor) and value.dim() == 0, f"returned {value!r}, not a scalar tensor"
    assert torch.isfinite(value), f"returned {value.item()}"
    value.backward()
    inputs = [estimate, *(v for v in extras.values() if isinstance(v, torch.Tensor) and v.requires_grad)]
    assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in inputs), "no gradient reaches any input"
    for name in getattr(loss, "needs", ()):
        with pytest.raises(TsekitError, match=name):
            loss(estimate, target, **{k: v for k, v in extras.items() if k != name})


def check_metric(spec: ComponentSpec, config: Any = None) -> None:
    import math

    import numpy as np

    from tsekit.checks import metric_interface_problems
    from tsekit.data import demo_corpus
    from tsekit.data.audio import read_audio
    from tsekit.errors import TsekitError

    metric = spec.create(config)
    problems = metric_interface_problems(metric)
    assert not problems, problems[0]
    first, second = (read_audio(u.path)[0][:16000].numpy().astype(np.float64) for u in demo_corpus()[:2])
    extras = {"embed": lambda wav: np.array([wav.std(), np.abs(wav).mean(), 1.0]), "enrollment": np.ones(3)}
    value = metric(first + 0.1 * second, first, first + second, 16000, **extras)
    values = value if isinstance(value, dict) else {metric.name: value}
    for key, number in values.items():
        assert isinstance(key, str) and isinstance(number, float | int), f"{key}: {number!r} is not a number"
        assert not math.isinf(number), f"{key} is infinite"
    for name in metric.needs:
        with pytest.raises(TsekitError, match=name):
            metric(first, first, first + second, 16000, **{k: v for k, v in extras.items() if k != name})


def check_vad(spec: ComponentSpec, config: Any = None) -> None:
    import itertools
    import numbers

    import torch

    from tsekit.data import demo_corpus
    from tsekit.data.audio import read_audio
    from tsekit.vad import VoiceActivityDetector, speech_spans

    vad = spec.create(config)
    assert isinstance(vad, VoiceActivityDetector), f"built a {type(vad).__name__}, not a VoiceActivityDetector"
    speech, rate = read_audio(demo_corpus()[0].path)
    padded = torch.cat([torch.zeros(rate), speech[: 3 * rate], torch.zeros(rate)])
    if not vad.sample_rates or rate in vad.sample_rates:
        raw = [tuple(span) for span in vad.speech(padded, rate)]
        assert all(len(span) == 2 and all(isinstance(v, numbers.Integral) for v in span) for span in raw), \
            f"spans must be (start, end) sample pairs, got {raw[:3]}"
        assert all(a < b for a, b in raw) and all(b <= c for (_, b), (c, _) in itertools.pairwise(raw)), \
            f"spans must be sorted and disjoint, got {raw[:5]}"
    found = speech_spans(padded, rate, vad)
    assert found and all(0 <= a < b <= padded.numel() for a, b in found), f"no speech found in speech: {found}"
    assert sum(b - a for a, b in found) <= 0.9 * padded.numel(), "the silence around the speech counts as speech"
    assert speech_spans(torch.zeros(2 * rate), rate, vad) == [], "speech found in silence"


def _test_preset(spec: ComponentSpec) -> str | None:
    return next((p for p in TEST_PRESETS if p in spec.presets), None)


def _with_preset(check: Callable[[ComponentSpec, Any], None], spec: ComponentSpec, preset: str | None) -> None:
    check(spec, spec.make_config(preset))


def check_declarations(spec: ComponentSpec, registry: Registry) -> None:
    from tsekit.checks import declaration_problems

    problems = declaration_problems(spec, registry)
    assert not problems, "\n".join(problems)


def check_clash(message: str) -> None:
    raise AssertionError(message)


CONFIG_CHECKS: dict[str, Callable[[ComponentSpec, Any], None]] = {
    "encoder": check_encoder,
    "fusion": check_fusion,
    "selector": check_selector,
    "loss": check_loss,
    "metric": check_metric,
    "vad": check_vad,
}


def iter_cases(registry: Registry | None = None, provider: str | None = None) -> Iterator[Case]:
    from tsekit.errors import PlacementError, TsekitError
    from tsekit.registry import get_registry

    reg = registry or get_registry()

    def mine(spec: ComponentSpec) -> bool:
        return provider is None or provider in (spec.provider.plugin, spec.provider.distribution)

    for conflict in reg.conflicts:
        clashing = [s for s in reg.list(conflict.kind) if s.name == conflict.name]
        if any(mine(s) for s in clashing):
            yield Case(f"clash-{conflict.kind}-{conflict.name}", partial(check_clash, str(conflict)))
    for spec in reg.list():
        if not mine(spec):
            continue
        yield Case(f"declarations-{spec.kind}-{spec.qualified_name}", partial(check_declarations, spec, reg))
        check = CONFIG_CHECKS.get(spec.kind)
        if check is None:
            continue
        yield Case(f"{spec.kind}-{spec.qualified_name}", partial(_with_preset, check, spec, None))
        for name in spec.presets:
            yield Case(f"{spec.kind}-{spec.qualified_name}-{name}", partial(_with_preset, check, spec, name))
    fusions = reg.list("fusion")
    for spec in reg.list("backbone"):
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
                try:  # the planner decides which fusions can run at a site
                    _site_plan(spec, preset, site.name, fusion, reg)
                except PlacementError:
                    continue
                except TsekitError:
                    pass  # not a placement refusal: the site check runs and reports it
                yield Case(
                    f"site-{spec.qualified_name}-{preset or 'default'}-{site.name}-{fusion.qualified_name}",
                    partial(check_site, spec, preset, site.name, fusion, reg),
                )


def conformance_cases(registry: Registry | None = None, provider: str | None = None) -> list[Any]:
    """``pytest.param`` cases for every registered component (or one provider's)."""
    return [pytest.param(c, id=c.id) for c in iter_cases(registry, provider)]


# -- fixtures ------------------------------------------------------------------------------------


def tone_items(n: int, offset: int = 0) -> list[dict[str, Any]]:
    """Training items at 8 kHz that a tiny model learns in a few steps: a target tone plus an interfering tone, the
    enrollment at the target's pitch (item i depends on i only)."""
    import torch

    items = []
    for i in range(offset, offset + n):
        g = torch.Generator().manual_seed(i)
        t = torch.arange(1600) / 8000
        f1, f2 = 200 + 300 * torch.rand(1, generator=g), 1500 + 500 * torch.rand(1, generator=g)
        target = 0.5 * torch.sin(2 * torch.pi * f1 * t)
        enrollment = 0.5 * torch.sin(2 * torch.pi * f1 * torch.arange(3200) / 8000 + 2.0)
        items.append({"mixture": target + 0.5 * torch.sin(2 * torch.pi * f2 * t + 1.0), "target": target,
                      "enrollment": enrollment})
    return items


def one_error_line(result: Any) -> str:
    """A failed ``tsekit_cli`` run's error: exit code 1, no traceback, exactly one line on stderr (returned)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


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
