"""Built-in losses: numbers against numpy, absent targets, extras, weighted sums and parse_loss."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tsekit.plugins
from tsekit.errors import ConfigError, TsekitError, UnknownComponentError
from tsekit.losses import parse_loss, parse_terms
from tsekit.plugins import load_plugins
from tsekit_builtin import losses


@pytest.fixture(scope="module")
def registry():
    return load_plugins(("losses", losses)).registry


@pytest.fixture(autouse=True)
def _only_losses(registry, monkeypatch):
    # WeightedLoss builds its terms from the process registry unless given one: make that ours.
    plugin_set = load_plugins(("losses", losses))
    monkeypatch.setattr(tsekit.plugins, "_DEFAULT", plugin_set)


def make(registry, name, preset=None, **overrides):
    return registry.create("loss", name, preset=preset, overrides=overrides)


def signals(batch=3, length=800, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(batch, length, generator=g)
    noise = torch.randn(batch, length, generator=g)
    return target, noise


def numpy_si_sdr(est, ref):
    est, ref = est - est.mean(), ref - ref.mean()
    proj = np.dot(est, ref) / np.dot(ref, ref) * ref
    return 10 * np.log10(np.sum(proj**2) / np.sum((est - proj) ** 2))


def numpy_snr(est, ref):
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2))


def test_si_sdr_matches_numpy(registry):
    target, noise = signals()
    estimate = 0.7 * target + 0.3 * noise + 0.5  # offset: SI-SDR is zero-mean
    expected = np.mean(
        [numpy_si_sdr(e, t) for e, t in zip(estimate.double().numpy(), target.double().numpy(), strict=True)]
    )
    assert make(registry, "si-sdr")(estimate, target).item() == pytest.approx(-expected, abs=1e-3)


def test_si_sdr_scale_invariant_and_perfect(registry):
    target, noise = signals()
    loss = make(registry, "si-sdr")
    estimate = target + 0.2 * noise
    assert loss(3.5 * estimate, target).item() == pytest.approx(loss(estimate, target).item(), abs=1e-3)
    assert loss(target, target).item() < -60  # a perfect estimate: very negative
    assert loss(noise, target).item() > 15  # unrelated signals


def test_si_sdr_gradient(registry):
    target, noise = signals()
    estimate = (target + noise).requires_grad_()
    make(registry, "si-sdr")(estimate, target).backward()
    assert estimate.grad is not None and torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0
    # one gradient step improves it
    with torch.no_grad():
        better = estimate - 50 * estimate.grad
    assert make(registry, "si-sdr")(better, target) < make(registry, "si-sdr")(estimate.detach(), target)


@pytest.mark.parametrize("name", ["si-sdr", "snr"])
@pytest.mark.parametrize("with_mixture", [True, False])
def test_absent_target_rows(registry, name, with_mixture):
    target, noise = signals(batch=2)
    target[1] = 0.0  # the target speaker is silent in row 1
    mixture = target + noise
    loss = make(registry, name)
    extras = {"mixture": mixture} if with_mixture else {}
    values = []
    for gain in (1.0, 0.1, 0.01, 0.001):
        estimate = (gain * noise).requires_grad_()
        value = loss(estimate[1:], target[1:], **({"mixture": mixture[1:]} if with_mixture else {}))
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0
        values.append(value.item())
    assert all(a > b for a, b in itertools.pairwise(values)), values
    if with_mixture:
        assert values[0] == pytest.approx(10 * math.log10(noise[1].pow(2).sum() / mixture[1].pow(2).sum()), abs=0.1)
        assert -31 < values[-1] < -29  # 60 dB down, floored at absent_floor_db = 30
    # in a batch the absent row is finite and the present row is plain -SI-SDR/SNR
    estimate = target + 0.1 * noise
    rows = [
        loss(estimate[i : i + 1], target[i : i + 1], **{k: v[i : i + 1] for k, v in extras.items()}).item()
        for i in range(2)
    ]
    assert loss(estimate, target, **extras).item() == pytest.approx(sum(rows) / 2, abs=1e-3)
    skip = make(registry, name, "skip-absent")
    assert skip(estimate, target).item() == pytest.approx(rows[0] / 2, abs=1e-3)


def test_snr_matches_numpy(registry):
    target, noise = signals()
    estimate = 0.9 * target + 0.4 * noise + 0.1
    expected = np.mean(
        [numpy_snr(e, t) for e, t in zip(estimate.double().numpy(), target.double().numpy(), strict=True)]
    )
    assert make(registry, "snr")(estimate, target).item() == pytest.approx(-expected, abs=1e-3)
    assert make(registry, "snr")(2 * target, target).item() == pytest.approx(0.0, abs=1e-3)  # not scale-invariant


def test_spectral_mse(registry):
    target, noise = signals(length=1600)
    loss = make(registry, "spectral-mse")
    assert loss(target, target, sample_rate=16000).item() == pytest.approx(0.0, abs=1e-9)
    assert loss(target + 0.1 * noise, target, sample_rate=16000).item() > 0
    assert loss(target + noise, target, sample_rate=16000) > loss(target + 0.1 * noise, target, sample_rate=16000)
    assert loss.sizes(16000) == (1200, 400, 160)  # VoiceFilter at 16 kHz
    assert loss.sizes(8000) == (600, 200, 80)
    with pytest.raises(TsekitError, match="sample_rate"):
        loss(target, target)
    assert torch.isfinite(loss(target[:, :1], target[:, :1], sample_rate=16000))  # T = 1 works


def test_multiscale_weights(registry):
    target, noise = signals()
    scales = torch.stack([target + s * noise for s in (0.1, 0.5, 1.0)], dim=1)
    si_sdr = make(registry, "si-sdr")
    expected = sum(w * si_sdr(scales[:, i], target).item() for i, w in enumerate((0.8, 0.1, 0.1)))
    loss = make(registry, "multiscale-si-sdr")
    assert loss(scales[:, 0], target, scales=scales).item() == pytest.approx(expected, abs=1e-3)
    with pytest.raises(TsekitError, match="scales"):
        loss(scales[:, 0], target)
    with pytest.raises(TsekitError, match=r"\[B, 3, T\]"):
        loss(scales[:, 0], target, scales=scales[:, :2])
    assert make(registry, "multiscale-si-sdr", weights=(1.0,))(target, target, scales=target[:, None]) < -60


def test_speaker_ce(registry):
    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(4, 7, generator=g), torch.tensor([0, 3, 6, 2])
    wav = torch.zeros(4, 10)
    loss = make(registry, "speaker-ce")
    assert loss(wav, wav, speaker_logits=logits, speaker_ids=ids).item() == pytest.approx(
        F.cross_entropy(logits, ids).item(), abs=1e-6
    )
    with pytest.raises(TsekitError, match="speaker_logits, speaker_ids"):
        loss(wav, wav)
    # AAM-softmax on cosines: the margin only makes the target harder
    cos = 0.5 * torch.tanh(logits)  # θ < π - m: the plain cos(θ + m) branch
    aam = make(registry, "speaker-ce", "aam")
    plain = make(registry, "speaker-ce", scale=30.0)
    assert aam(wav, wav, speaker_logits=cos, speaker_ids=ids) > plain(wav, wav, speaker_logits=cos, speaker_ids=ids)
    shifted = cos.clone()
    rows = torch.arange(4)
    shifted[rows, ids] = torch.cos(torch.acos(cos[rows, ids]) + 0.2)
    assert aam(wav, wav, speaker_logits=cos, speaker_ids=ids).item() == pytest.approx(
        F.cross_entropy(30 * shifted, ids).item(), abs=1e-3
    )
    with pytest.raises(ConfigError, match="scale"):
        make(registry, "speaker-ce", margin=0.2)


def test_weighted(registry):
    target, noise = signals()
    estimate = target + 0.3 * noise
    logits, ids = torch.randn(3, 5), torch.tensor([1, 0, 4])
    loss = make(registry, "weighted", terms=("si-sdr", "speaker-ce"), weights=(1.0, 0.5))
    assert set(loss.needs) == {"speaker_logits", "speaker_ids"}
    total = loss(estimate, target, speaker_logits=logits, speaker_ids=ids, sample_rate=16000)
    si_sdr = make(registry, "si-sdr")(estimate, target).item()
    ce = F.cross_entropy(logits, ids).item()
    assert total.item() == pytest.approx(si_sdr + 0.5 * ce, abs=1e-4)
    assert loss.last_terms == pytest.approx({"si-sdr": si_sdr, "speaker-ce": ce}, abs=1e-4)
    with pytest.raises(TsekitError, match="speaker_logits"):
        loss(estimate, target)
    for bad in ({"terms": ("si-sdr",), "weights": (1.0, 2.0)}, {"terms": ("weighted",), "weights": (1.0,)}):
        with pytest.raises(ConfigError):
            make(registry, "weighted", **bad)
    with pytest.raises(UnknownComponentError, match="si-sdr"):
        make(registry, "weighted", terms=("si-sdx",), weights=(1.0,))


def test_parse_terms():
    assert parse_terms("si-sdr") == [("si-sdr", 1.0)]
    assert parse_terms("si-sdr+0.5*speaker-ce") == [("si-sdr", 1.0), ("speaker-ce", 0.5)]
    assert parse_terms("  0.8 * si-sdr +0.2*spectral-mse ") == [("si-sdr", 0.8), ("spectral-mse", 0.2)]
    assert parse_terms("1e-2*snr + .5*losses:si-sdr") == [("snr", 0.01), ("losses:si-sdr", 0.5)]
    for bad in ("", "  ", "+", "si-sdr+", "+si-sdr", "0.5*", "*si-sdr", "si-sdr 0.5", "si-sdr*0.5", "x & y"):
        with pytest.raises(ConfigError, match="loss spec"):
            parse_terms(bad)


def test_parse_loss(registry):
    target, noise = signals(length=1600)
    estimate = target + 0.3 * noise
    single = parse_loss("si-sdr", registry)
    assert type(single).__name__ == "SISDRLoss"
    pair = parse_loss("si-sdr+0.5*speaker-ce", registry)
    assert pair.weights == (1.0, 0.5) and pair.term_names == ["si-sdr", "speaker-ce"]
    mixed = parse_loss(" 0.8*si-sdr + 0.2*spectral-mse ", registry)
    value = mixed(estimate, target, sample_rate=16000)
    expected = 0.8 * single(estimate, target) + 0.2 * make(registry, "spectral-mse")(
        estimate, target, sample_rate=16000
    )
    assert value.item() == pytest.approx(expected.item(), abs=1e-4)
    assert set(mixed.last_terms) == {"si-sdr", "spectral-mse"}
    assert type(parse_loss("SISDR", registry)).__name__ == "SISDRLoss"  # aliases, case
    with pytest.raises(UnknownComponentError, match="Did you mean 'si-sdr'"):
        parse_loss("si-sdr + 0.5*si-sdrr", registry)
    with pytest.raises(ConfigError, match="twice"):
        parse_loss("si-sdr + 0.5*sisdr", registry)
    with pytest.raises(ConfigError):
        parse_loss("si-sdr +", registry)


def _all_extras(batch, length):
    g = torch.Generator().manual_seed(1)
    return {
        "mixture": torch.randn(batch, length, generator=g),
        "scales": torch.randn(batch, 3, length, generator=g).requires_grad_(),
        "sources": torch.randn(batch, 2, length, generator=g).requires_grad_(),
        "speaker_logits": torch.tanh(torch.randn(batch, 5, generator=g)).requires_grad_(),
        "speaker_ids": torch.tensor([0, 4]),
        "sample_rate": 16000,
        "embedding": torch.randn(batch, 3, generator=g),
        "reencode": lambda wav: torch.stack([wav.mean(-1), wav.pow(2).mean(-1), wav[..., ::2].mean(-1)], -1),
        "step": 0,
    }


def test_every_registered_loss_with_defaults(registry):
    names = registry.names("loss")
    assert {"si-sdr", "snr", "spectral-mse", "multiscale-si-sdr", "pit-si-sdr", "speaker-ce", "weighted"} <= set(names)
    for spec in registry.list("loss"):
        for preset in (None, *spec.presets):
            loss = spec.create(spec.make_config(preset))
            assert isinstance(loss, torch.nn.Module) and isinstance(loss.needs, tuple)
            assert set(loss.needs) <= set(
                spec.capabilities_for(spec.make_config(preset)).extras.get("needs", loss.needs)
            )
            target = torch.randn(2, 400)
            estimate = (target + torch.randn(2, 400)).requires_grad_()
            extras = _all_extras(2, 400)
            value = loss(estimate, target, **extras)
            assert value.dim() == 0 and torch.isfinite(value), (spec.name, preset)
            value.backward()
            leaves = [estimate, extras["scales"], extras["sources"], extras["speaker_logits"]]
            grads = [t.grad for t in leaves if t.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads), (spec.name, preset)
            assert any(g.abs().sum() > 0 for g in grads), (spec.name, preset)
            if loss.needs:
                with pytest.raises(TsekitError, match=loss.needs[0]):
                    loss(estimate, target)
