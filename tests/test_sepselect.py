"""Separate-then-select: Conv-TasNet sizes, sources, embedding selection, the PIT loss, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tsekit
from tsekit.data import demo_corpus
from tsekit.data.audio import read_audio
from tsekit.engine.trainer import LoopConfig, OptimConfig, fit
from tsekit.errors import TsekitError
from tsekit.losses import parse_loss
from tsekit.nn import Adapter, SiteAdapter, SpeakerEncoder, count_parameters


def make(preset=None, **overrides):
    spec = tsekit.get_registry().get("backbone", "sepselect")
    return spec.create(spec.make_config(preset, overrides))


def tone(freq: float, length: int, sample_rate: int = 8000, phase: float = 0.0) -> torch.Tensor:
    return 0.5 * torch.sin(2 * torch.pi * freq * torch.arange(length) / sample_rate + phase)


class BandEncoder(SpeakerEncoder):
    """A deterministic stand-in encoder: the energy share of 8 frequency bands; records its modes."""

    embedding_dim, sample_rate = 8, 8000

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        self.modes.append(self.training)
        power = torch.fft.rfft(wav).abs().pow(2)
        bands = torch.stack([b.sum(-1) for b in power.tensor_split(self.embedding_dim, dim=-1)], dim=-1)
        return bands / bands.sum(-1, keepdim=True)


def test_paper_and_small_sizes() -> None:
    # Conv-TasNet (N=512, L=16, B=Sc=128, H=512, P=3, X=8, R=3): TD-SpeakerBeam's network with a
    # second mask (Sc × N weights + N biases); the paper reports 5.1 M.
    speakerbeam = tsekit.get_registry().get("backbone", "speakerbeam")
    extractor = count_parameters(speakerbeam.create(speakerbeam.make_config()))
    assert count_parameters(make()) == extractor + 128 * 512 + 512 == 5_050_545
    assert count_parameters(make("small")) == 1_729_697
    assert make("16k").sample_rate == 16000


@pytest.mark.parametrize("length", [1, 16, 17, 801])
def test_sources_and_output_shapes(length: int) -> None:
    torch.manual_seed(0)
    backbone = make("tiny")
    mixture = torch.randn(3, length)
    out = backbone(mixture, Adapter())
    assert out.shape == mixture.shape
    assert backbone.last_sources.shape == (3, 2, length)
    assert torch.equal(out, backbone.last_sources[:, 0])  # the base adapter selects nothing
    assert not torch.allclose(backbone.last_sources[:, 0], backbone.last_sources[:, 1])


def test_build_default_has_no_sites_and_a_fusion_site_crosses() -> None:
    model = tsekit.build(encoder="dvector", backbone="sepselect", adapt_layers="default", preset="tiny")
    assert model.spec.adapt_layers == [] and model.parameter_counts()["fusion"] == 0
    caps = tsekit.get_registry().capabilities("backbone", "sepselect")
    assert caps.default_sites == () and len(caps.sites) == 24
    informed = tsekit.build(encoder="dvector", fusion="film", backbone="sepselect", adapt_layers="2", preset="tiny")
    assert informed.spec.adapt_layers == ["tcn.2"] and informed.parameter_counts()["fusion"] > 0


def test_selection_picks_the_source_closest_to_the_enrollment() -> None:
    encoder = BandEncoder()
    model = tsekit.build(encoder, "multiply", "sepselect", "none", preset="tiny")
    low, high = tone(300, 800), tone(3000, 800)
    enrollment = torch.stack([tone(300, 1600, phase=1.0), tone(3000, 1600, phase=2.0)])
    sources = torch.stack([torch.stack([low, high]), torch.stack([low, high])])  # [B=2, S=2, T]
    model.backbone.separate = lambda mixture, adapt: sources
    model.train()
    out = model(sources.sum(1), enrollment)
    assert torch.equal(out[0], low) and torch.equal(out[1], high)
    assert encoder.modes == [True, False] and encoder.training  # sources embedded in eval mode, mode restored


def test_site_adapter_selects_by_cosine() -> None:
    sources = torch.tensor([[[1.0, 0.0, 5.0], [0.0, 1.0, 5.0]]] * 2)  # [B=2, S=2, T=3]
    embedding = torch.tensor([[0.0, 2.0], [3.0, 0.1]])
    pick = SiteAdapter({}, embedding, lambda wav: wav[:, :2]).select(sources)
    assert torch.equal(pick, torch.stack([sources[0, 1], sources[1, 0]]))
    assert torch.equal(SiteAdapter({}, embedding).select(sources), sources[:, 0])


def test_dvector_selects_the_enrolled_speaker_on_real_speech() -> None:
    model = tsekit.build("dvector", backbone="sepselect", preset="tiny").eval()
    utts = demo_corpus()
    a, _ = read_audio(utts[0].path, model.sample_rate)
    b, _ = read_audio(utts[1].path, model.sample_rate)
    n = 2 * model.sample_rate
    embedding = model.enroll(a[n : 3 * n].unsqueeze(0))
    for order in ((a[:n], b[:n]), (b[:n], a[:n])):
        chosen = SiteAdapter({}, embedding, model.embed_sources).select(torch.stack(order).unsqueeze(0))
        assert torch.equal(chosen[0], a[:n])


def test_precomputed_embeddings_fall_back_to_source_zero() -> None:
    model = tsekit.build("precomputed", "film", "sepselect", "0", preset="tiny", encoder_options={"embedding_dim": 4})
    out = model(torch.randn(2, 400), embedding=torch.randn(2, 4))
    assert torch.equal(out, model.backbone.last_sources[:, 0])


def best_order_loss(sources: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor) -> float:
    """Mean over rows of the better order's mean ``si-sdr`` loss, row by row."""
    si_sdr = parse_loss("si-sdr")
    rows = []
    for b in range(target.shape[0]):
        refs = (target[b : b + 1], mixture[b : b + 1] - target[b : b + 1])
        orders = [
            (si_sdr(sources[b : b + 1, i], refs[0], mixture=mixture[b : b + 1])
             + si_sdr(sources[b : b + 1, 1 - i], refs[1], mixture=mixture[b : b + 1])) / 2
            for i in (0, 1)
        ]
        rows.append(min(float(o) for o in orders))
    return sum(rows) / len(rows)


def test_pit_loss_is_permutation_invariant_and_takes_the_best_order() -> None:
    g = torch.Generator().manual_seed(0)
    target, other = torch.randn(3, 800, generator=g), torch.randn(3, 800, generator=g)
    mixture = target + other
    sources = torch.stack([target, other], dim=1) + 0.3 * torch.randn(3, 2, 800, generator=g)
    sources[1] = sources[1].flip(0)  # row 1 in the other order
    loss = parse_loss("pit-si-sdr")
    value = loss(sources[:, 0], target, sources=sources, mixture=mixture)
    assert value.item() == pytest.approx(loss(None, target, sources=sources.flip(1), mixture=mixture).item(), abs=1e-5)
    assert value.item() == pytest.approx(best_order_loss(sources, target, mixture), abs=1e-4)
    assert value.item() < -5  # both rows found their order: about 10 dB SI-SDR
    with pytest.raises(TsekitError, match="sources"):
        loss(target, target, mixture=mixture)
    with pytest.raises(TsekitError, match=r"\[B, 2, T\]"):
        loss(target, target, sources=sources[:, :1], mixture=mixture)


class Tones(torch.utils.data.Dataset):
    """Item i: a low target tone + a high interfering tone; the enrollment is the target's pitch."""

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i % 8)
        f1, f2 = 200 + 300 * torch.rand(1, generator=g), 1500 + 500 * torch.rand(1, generator=g)
        target, other = tone(f1, 1600), tone(f2, 1600, phase=1.0)
        return {"mixture": target + other, "target": target, "enrollment": tone(f1, 3200, phase=2.0)}


def test_a_few_steps_reduce_the_pit_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tsekit.build("dvector", backbone="sepselect", preset="tiny")
    data = Tones()
    val = [{k: torch.stack([data[i][k] for i in range(4)]) for k in ("mixture", "target", "enrollment")}]
    config = LoopConfig(batch_size=4, max_steps=40, log_every=10, val_every=40, checkpoint_every=40,
                        optim=OptimConfig(lr=1e-2, warmup_steps=2))
    result = fit(model, parse_loss("pit-si-sdr"), data, tmp_path, config, val_batches=val, device="cpu")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert len(losses) == 4 and losses[-1] < losses[0] - 10, losses  # dB (seen: 3.8 → -18.3)
    assert result["steps"] == 40 and rows[-1]["split"] == "val" and rows[-1]["n"] == 4
    assert rows[-1]["si_sdr"] > 10  # eval mode: the d-vector selected the separated targets (seen: 19.1 dB)


def test_train_cli_with_sepselect_and_pit(tsekit_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = tsekit_cli(["train", "--preset", "tiny", "--backbone", "sepselect", "--out", str(out), "--json",
                         "--max-steps", "2", "loss=pit-si-sdr", "data.val_size=2", "data.val_speakers=4",
                         "train.batch_size=2", "train.val_every=2", "train.checkpoint_every=2",
                         "train.optim.warmup_steps=1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 2
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["loss"] == "pit-si-sdr" and meta["model"]["adapt_layers"] == []
    extractor = tsekit.load_model(out)
    utts = demo_corpus()
    mixture, sample_rate = read_audio(utts[1].path)
    estimate, rate = extractor.extract(utts[1].path, extractor.enroll(utts[0].path))
    assert estimate.shape == mixture.shape and rate == sample_rate and torch.isfinite(estimate).all()
