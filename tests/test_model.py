"""tsekit.build: assembly, enroll/extract separation, precomputed embeddings, a little training."""

from __future__ import annotations

import pytest
import torch

import tsekit
from tsekit.errors import PlacementError, TsekitError


def test_build_default_is_the_paper_model() -> None:
    model = tsekit.build("precomputed", None, "speakerbeam")
    spec = model.spec
    assert spec.fusion == "multiply" and spec.adapt_layers == ["tcn.7"]
    counts = model.parameter_counts()
    # BUT TD-SpeakerBeam extractor: ~4.98 M (Conv-TasNet masker + enc/dec, 8 kHz config)
    assert 4.9e6 < counts["backbone"] < 5.05e6, counts
    assert counts["encoder"] == 0


def test_forward_enrollment_and_embedding_paths_agree() -> None:
    torch.manual_seed(0)
    model = tsekit.build("dvector", "film", "speakerbeam", "first,last", preset="tiny").eval()
    assert model.sample_rate == 8000 and model.embedding_dim == 256
    mixture, enrollment = torch.randn(2, 4001), torch.randn(2, 8000)
    with torch.no_grad():
        out = model(mixture, enrollment)
        emb = model.enroll(enrollment)
        again = model.extract(mixture, emb)
        single = model.extract(mixture[0], emb[0])
    assert out.shape == mixture.shape
    assert torch.allclose(out, again)
    assert single.shape == (4001,) and torch.allclose(single, out[0], atol=1e-5)
    assert emb.shape == (2, 256)
    with pytest.raises(TsekitError, match="exactly one of"):
        model(mixture)
    with pytest.raises(TsekitError, match=r"expected \(2, 256\)"):
        model.extract(mixture, torch.randn(2, 12))


def test_enrollment_is_resampled_to_the_encoder_rate() -> None:
    model = tsekit.build("dvector", "add", "speakerbeam", preset="tiny").eval()  # 8 kHz backbone, 16 kHz encoder
    t = torch.arange(16000) / 8000
    wav8 = (torch.sin(2 * torch.pi * 220 * t) * 0.1).unsqueeze(0)
    import torchaudio.functional as AF

    with torch.no_grad():
        via_model = model.enroll(wav8)
        direct = model.encoder(AF.resample(wav8, 8000, 16000))
    assert torch.allclose(via_model, direct, atol=1e-5)


def test_precomputed_embedding_model() -> None:
    model = tsekit.build("precomputed", "concat", "speakerbeam", "all", preset="tiny", encoder_options={"embedding_dim": 32})
    out = model(torch.randn(1, 800), embedding=torch.randn(1, 32))
    assert out.shape == (1, 800)
    with pytest.raises(TsekitError, match="precomputed embeddings"):
        model(torch.randn(1, 800), torch.randn(1, 800))


def test_shared_fusion_uses_one_module() -> None:
    shared = tsekit.build("precomputed", "film", "speakerbeam", "all", preset="tiny", share_fusion=True)
    separate = tsekit.build("precomputed", "film", "speakerbeam", "all", preset="tiny")
    per_site = separate.parameter_counts()["fusion"] // 4
    assert shared.parameter_counts()["fusion"] == per_site


def test_refused_combinations_name_the_reason() -> None:
    with pytest.raises(PlacementError, match="needs the embedding dim \\(256\\) to equal the channel dim"):
        tsekit.build("dvector", "multiply", "speakerbeam", preset="tiny", fusion_options={"project": False})
    # equal dims make the projection-free SpeakerBeam multiply legal (default config: 128 + 128 = 256)
    model = tsekit.build("dvector", "multiply", "speakerbeam", fusion_options={"project": False})
    assert model.parameter_counts()["fusion"] == 0
    with pytest.raises(PlacementError, match="out of range"):
        tsekit.build("dvector", "film", "speakerbeam", 40)


def test_a_few_training_steps_learn_to_follow_the_embedding() -> None:
    """Toy TSE: a low tone and a high tone are mixed; the embedding says which one to keep."""
    torch.manual_seed(0)
    model = tsekit.build("precomputed", "film", "speakerbeam", preset="tiny", encoder_options={"embedding_dim": 2})
    t = torch.arange(1600) / 8000

    def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        low = torch.sin(2 * torch.pi * (200 + 200 * torch.rand(n, 1)) * t + 6 * torch.rand(n, 1))
        high = torch.sin(2 * torch.pi * (1800 + 400 * torch.rand(n, 1)) * t + 6 * torch.rand(n, 1))
        pick = torch.rand(n) < 0.5
        target = torch.where(pick[:, None], low, high) * 0.5
        emb = torch.stack([pick.float(), (~pick).float()], dim=1)
        return (low + high) * 0.5, target, emb

    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(60):
        mixture, target, emb = batch()
        loss = (model(mixture, embedding=emb) - target).pow(2).mean() / target.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    mixture, target, emb = batch(32)
    with torch.no_grad():
        right = (model(mixture, embedding=emb) - target).pow(2).mean() / target.pow(2).mean()
        wrong = (model(mixture, embedding=1 - emb) - target).pow(2).mean() / target.pow(2).mean()
    assert right < 0.5 * losses[0], (losses[0], right)
    assert wrong > 2 * right, "the model ignores which speaker the embedding asks for"


def test_frozen_encoder_stays_frozen_in_training_mode() -> None:
    model = tsekit.build("dvector", "film", "speakerbeam", preset="tiny").train()
    assert not model.encoder.training
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert model.parameter_counts()["trainable"] == model.parameter_counts()["total"] - model.parameter_counts()["encoder"]
