"""The jointly learned encoder: SpEx+ sharing (parameter identity, paper size), padding invariance,
its own front end, the speaker heads and a tiny joint training run."""

import math

import pytest
import torch

from tsekit.errors import TsekitError
from tsekit.model import build
from tsekit.nn import count_parameters
from tsekit.plugins import load_plugins
from tsekit.testing import check_encoder
from tsekit_builtin import core, fusions, joint, speakerbeam, spexplus

TINY = {"embedding_dim": 16, "shared_channels": 16, "shared_hidden": 32, "frontend_channels": 16, "n_mels": 40}


@pytest.fixture(scope="module")
def registry():
    return load_plugins(
        ("core", core), ("fusions", fusions), ("spexplus", spexplus), ("speakerbeam", speakerbeam), ("joint", joint)
    ).registry


def tiny_spex(registry, **options):
    return build("joint", "concat", "spexplus", preset="tiny", encoder_options={**TINY, **options}, registry=registry)


@pytest.mark.parametrize(
    "options", [{}, {"frontend": "tcn"}, {"num_speakers": 3, "head": "aam"}, {"n_resblocks": 0}], ids=str
)
def test_standalone_conformance(registry, options):
    spec = registry.get("encoder", "joint")
    check_encoder(spec, spec.make_config(None, options))


def test_paper_size_when_shared(registry):
    model = build("joint", None, "spexplus", registry=registry)
    assert model.encoder.shared and model.encoder.frontend is None
    # cLN(768) + 1×1 768→256 + ResBlocks 256→256, 256→512, 512→512 + 1×1 512→256: SpEx+'s 1.51 M.
    assert count_parameters(model.encoder) == 1_514_502
    assert count_parameters(model) == 9_073_987 + 4 * (512 * 256 + 256) + 1_514_502  # ≈ 11.1 M as in the paper


def test_shares_the_backbone_encoder(registry):
    torch.manual_seed(0)
    model = tiny_spex(registry)
    enc, bb = model.encoder, model.backbone
    assert enc.shared and enc._encode.__self__ is bb
    assert not any(m is bb for m in enc.modules())
    shared_weight = enc._encode.__self__.encoders[0].weight
    assert shared_weight is bb.encoders[0].weight
    enc_ids = {id(p) for p in enc.parameters()}
    assert enc_ids.isdisjoint(id(p) for p in bb.parameters())
    counts = model.parameter_counts()
    assert counts["total"] == counts["encoder"] + counts["fusion"] + counts["backbone"]
    assert counts["total"] == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())

    mixture, enrollment = torch.randn(2, 900), torch.randn(2, 1200)
    model(mixture, enrollment, torch.tensor([1200, 1000])).pow(2).mean().backward()
    assert all(p.grad is not None for p in enc.parameters())
    assert bb.encoders[0].weight.grad.abs().sum() > 0
    assert bb.blocks[0].in_conv.weight.grad.abs().sum() > 0
    # The enrollment path alone trains the shared speech encoder too.
    model.zero_grad()
    model.enroll(enrollment).pow(2).sum().backward()
    assert bb.encoders[0].weight.grad.abs().sum() > 0
    assert bb.blocks[0].in_conv.weight.grad is None


@pytest.mark.parametrize("train", [False, True])
def test_shared_padding_never_leaks(registry, train):
    torch.manual_seed(0)
    enc = tiny_spex(registry).encoder.train(train)
    wav, lengths = torch.randn(3, 1500), torch.tensor([1500, 1037, 321])
    longer = torch.cat([wav, torch.randn(3, 77)], dim=1)  # different padding beyond the same lengths
    with torch.no_grad():
        a, b = enc(wav, lengths), enc(longer, lengths)
    assert torch.allclose(a, b, atol=1e-5)
    if not train:
        with torch.no_grad():
            alone = torch.cat([enc(wav[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())])
        assert torch.allclose(a, alone, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("length", [1, 5, 30])
def test_short_enrollments(registry, length):
    for enc in (tiny_spex(registry).encoder, registry.create("encoder", "joint", overrides=TINY)):
        emb = enc(torch.randn(2, length))
        assert emb.shape == (2, 16) and torch.isfinite(emb).all()


def test_rate_must_match_when_shared(registry):
    with pytest.raises(TsekitError, match="set the encoder option sample_rate=16000"):
        build("joint", None, "spexplus", preset="small", encoder_options=TINY, registry=registry)
    model = build("joint", None, "spexplus", preset="small", encoder_options={**TINY, "sample_rate": 16000},
                  registry=registry)
    assert model.encoder.shared and model.encoder.sample_rate == 16000
    # Not shared: the own front end at its own rate; build resamples enrollments.
    model = build("joint", None, "spexplus", preset="small", encoder_options={**TINY, "share_encoder": False},
                  registry=registry)
    assert not model.encoder.shared
    assert model(torch.randn(1, 1600), torch.randn(1, 3200)).shape == (1, 1600)


def test_own_front_end_with_speakerbeam(registry):
    torch.manual_seed(0)
    model = build("joint", None, "speakerbeam", preset="tiny", encoder_options=TINY, registry=registry)
    enc = model.encoder
    assert not enc.shared and enc.frontend is not None
    assert registry.capabilities("encoder", "joint", registry.make_config("encoder", "joint")).trainable
    model(torch.randn(2, 800), torch.randn(2, 1600), torch.tensor([1600, 900])).pow(2).mean().backward()
    assert all(p.grad is not None for p in enc.parameters())
    assert model.backbone.encoder.weight.grad is not None


def test_speaker_heads(registry):
    torch.manual_seed(0)
    emb = torch.randn(4, 16, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1])
    plain = registry.create("encoder", "joint", overrides=TINY)
    assert plain.speaker_logits(emb) is None
    with pytest.raises(TsekitError, match="num_speakers"):
        plain.speaker_loss(emb, labels)
    for head in ("ce", "aam"):
        enc = registry.create("encoder", "joint", overrides={**TINY, "num_speakers": 3, "head": head})
        assert enc.speaker_loss_weight == 0.5
        logits = enc.speaker_logits(emb)
        assert logits.shape == (4, 3)
        loss = enc.speaker_loss(emb, labels)
        loss.backward()
        assert torch.isfinite(loss) and emb.grad is not None
    # AAM: scaled cosines, and the margin makes the loss larger than plain normalised softmax.
    cos = enc.classifier(emb)
    assert torch.allclose(enc.speaker_logits(emb), 30 * cos)
    assert enc.speaker_loss(emb, labels) > torch.nn.functional.cross_entropy(30 * cos, labels)


def _speaker(which, n, gen):
    """Synthetic 'speakers': harmonic voices with low (100-140 Hz) or high (220-280 Hz) pitch."""
    lo, hi = (100, 140) if which == 0 else (220, 280)
    f0 = lo + (hi - lo) * torch.rand(1, generator=gen)
    t = torch.arange(n) / 8000
    tilt = 1.0 if which == 0 else 0.4
    wav = sum(
        torch.sin(2 * math.pi * k * f0 * t + 6.3 * torch.rand(1, generator=gen)) / k**tilt for k in range(1, 12)
        if k * f0 < 3800
    )
    return 0.1 * wav / wav.std() + 0.005 * torch.randn(n, generator=gen)


def _batch(size, gen, n=800):
    labels = torch.arange(size) % 2
    target = torch.stack([_speaker(int(s), n, gen) for s in labels])
    other = torch.stack([_speaker(1 - int(s), n, gen) for s in labels])
    enrollment = torch.stack([_speaker(int(s), n, gen) for s in labels])
    return target + other, target, enrollment, labels



def test_joint_training_separates_speakers(registry):
    torch.manual_seed(0)
    model = tiny_spex(registry, num_speakers=2)
    enc = model.encoder
    gen = torch.Generator().manual_seed(1)
    _, _, held_out, held_labels = _batch(16, gen)

    def evaluate():
        model.eval()
        with torch.no_grad():
            emb = model.enroll(held_out)
            acc = (enc.speaker_logits(emb).argmax(1) == held_labels).float().mean().item()
            loss = enc.speaker_loss(emb, held_labels).item()
        model.train()
        return acc, loss

    acc0, loss0 = evaluate()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(60):
        mixture, target, enrollment, labels = _batch(8, gen)
        emb = model.enroll(enrollment)
        est = model.extract(mixture, emb)
        t = target - target.mean(1, keepdim=True)
        e = est - est.mean(1, keepdim=True)
        proj = (e * t).sum(1, keepdim=True) / t.pow(2).sum(1, keepdim=True) * t
        si_sdr = 10 * torch.log10(proj.pow(2).sum(1) / (e - proj).pow(2).sum(1).clamp_min(1e-8) + 1e-8)
        loss = -si_sdr.mean() + enc.speaker_loss_weight * enc.speaker_loss(emb, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc1, loss1 = evaluate()
    assert acc0 <= 0.75 and acc1 == 1.0, (acc0, acc1)
    assert loss1 < 0.1 * loss0, (loss0, loss1)
