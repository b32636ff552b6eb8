"""Swapping a built model's speaker encoder behind a learned projection (tsekit.swap)."""

from __future__ import annotations

import json

import pytest
import torch

import tsekit
from tsekit.engine.checkpoint import load_model, save_model
from tsekit.engine.trainer import LoopConfig, OptimConfig, fit
from tsekit.errors import TsekitError
from tsekit.model import ProjectedEncoder
from tsekit.swap import swap_encoder, trainable_parts


@pytest.fixture(scope="module")
def base() -> tsekit.TSEModel:
    torch.manual_seed(0)
    model = tsekit.build("dvector", "film", "speakerbeam", "first,last", preset="tiny")  # 8 kHz, 256-d
    with torch.no_grad():
        for p in model.fusions.parameters():
            p.normal_(0, 0.1)
    return model


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_shapes_after_swap(base) -> None:
    torch.manual_seed(1)
    swapped = swap_encoder(base, "ecapa", preset="tiny")
    enc = swapped.encoder
    assert isinstance(enc, ProjectedEncoder)
    assert enc.inner.embedding_dim == 192 and enc.embedding_dim == 256 == swapped.embedding_dim
    assert tuple(enc.projection.weight.shape) == (256, 192)
    assert swapped.spec.encoder == "ecapa" and swapped.spec.encoder_projection_dim == 256
    assert swapped.spec.backbone == base.spec.backbone and swapped.spec.adapt_layers == base.spec.adapt_layers
    mixture, enrollment = torch.randn(2, 1200), torch.randn(2, 8000)
    with torch.no_grad():
        assert swapped.eval().enroll(enrollment).shape == (2, 256)
        assert swapped(mixture, enrollment).shape == (2, 1200)
    # backbone and fusions are copies with the same weights; the original model keeps its encoder
    assert base.spec.encoder == "dvector" and base.encoder is not swapped.encoder
    assert swapped.backbone is not base.backbone
    for (k, a), b in zip(base.backbone.state_dict().items(), swapped.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_only_the_projection_is_trainable(base) -> None:
    swapped = swap_encoder(base, "ecapa", preset="tiny")  # ecapa without a source is trainable by default
    parts = trainable_parts(swapped)
    assert parts == {"encoder": 0, "projection": 192 * 256 + 256, "fusion": 0, "backbone": 0}
    names = {n for n, p in swapped.named_parameters() if p.requires_grad}
    assert names == {"encoder.projection.weight", "encoder.projection.bias"}
    swapped.train()
    assert not swapped.encoder.inner.training and not swapped.backbone.training  # frozen parts stay in eval
    both = swap_encoder(base, "ecapa", preset="tiny", train="fusion+projection")
    assert trainable_parts(both)["fusion"] > 0 and trainable_parts(both)["backbone"] == 0
    every = swap_encoder(base, "joint", preset="tiny", train="all")  # a trainable joint encoder keeps training
    assert all(v > 0 for v in trainable_parts(every).values())


def test_optimizer_steps_change_only_the_projection(base) -> None:
    torch.manual_seed(2)
    swapped = swap_encoder(base, "ecapa", preset="tiny").train()
    before, base_before = _state(swapped), _state(base)
    params = [p for p in swapped.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    mixture, enrollment, target = torch.randn(2, 800), torch.randn(2, 8000), torch.randn(2, 800)
    for _ in range(3):
        opt.zero_grad()
        (swapped(mixture, enrollment) - target).pow(2).mean().backward()
        opt.step()
    after = _state(swapped)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"encoder.projection.weight", "encoder.projection.bias"}
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in base_before.items())


def test_save_and_load_round_trip(base, tmp_path) -> None:
    torch.manual_seed(3)
    swapped = swap_encoder(base, "ecapa", preset="tiny")
    with torch.no_grad():
        swapped.encoder.projection.weight.normal_()
    save_model(swapped, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["model"]["encoder_projection_dim"] == 256 and meta["embedding_dim"] == 256
    again = load_model(tmp_path / "m")
    assert again.spec == swapped.spec and isinstance(again.encoder, ProjectedEncoder)
    extractor = tsekit.load_model(tmp_path / "m")
    mixture, enrollment = torch.randn(2, 1000), torch.randn(2, 8000)
    with torch.no_grad():
        expected = swapped.eval()(mixture, enrollment)
        assert torch.equal(again(mixture, enrollment), expected)
        assert torch.equal(extractor.model(mixture, enrollment), expected)


def test_dimension_mismatch_needs_a_projection(base) -> None:
    with pytest.raises(TsekitError, match=r"192-d embeddings but the model's fusions take 256-d; pass project=True"):
        swap_encoder(base, "ecapa", preset="tiny", project=False, train="fusion+projection")
    with pytest.raises(TsekitError, match="needs project=True"):
        swap_encoder(base, "dvector", project=False)
    with pytest.raises(TsekitError, match="train must be one of"):
        swap_encoder(base, "dvector", train="encoder")
    same = swap_encoder(base, "dvector", project=False, train="fusion+projection")  # equal sizes: a plain swap
    assert not isinstance(same.encoder, ProjectedEncoder) and same.spec.encoder_projection_dim is None
    assert trainable_parts(same) == {"encoder": 0, "projection": 0, "fusion": trainable_parts(same)["fusion"],
                                     "backbone": 0}


def test_build_honours_encoder_projection_dim() -> None:
    model = tsekit.build("ecapa", "add", "speakerbeam", preset="tiny", encoder_preset="tiny", encoder_projection_dim=24)
    assert isinstance(model.encoder, ProjectedEncoder) and model.embedding_dim == 24
    assert model.fusions[next(iter(model.fusions))].embedding_dim == 24
    with pytest.raises(TsekitError, match="encoder_projection_dim must be positive"):
        tsekit.build("ecapa", "add", "speakerbeam", preset="tiny", encoder_preset="tiny", encoder_projection_dim=0)


class _Items:
    """A few fixed items, each enrollment reused (with a key), as the simulator's grid gives them."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(4)
        self.enrollments = [torch.randn(8000, generator=g) for _ in range(2)]

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(100 + i)
        return {"mixture": torch.randn(800, generator=g), "target": torch.randn(800, generator=g),
                "enrollment": self.enrollments[i % 2], "enrollment_key": f"e{i % 2}"}


def test_fit_trains_the_projection_with_cached_inner_embeddings(base, tmp_path) -> None:
    torch.manual_seed(5)
    swapped = swap_encoder(base, "ecapa", preset="tiny")
    before = _state(swapped)
    calls = []
    inner = swapped.encoder.inner
    inner.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    config = LoopConfig(batch_size=2, max_steps=3, val_every=1000, checkpoint_every=1000, log_every=1, amp=False,
                        optim=OptimConfig(lr=1e-2, warmup_steps=1))
    result = fit(swapped, lambda est, tgt, **_: (est - tgt).pow(2).mean(), _Items(), tmp_path / "run", config,
                 device="cpu")
    assert result["steps"] == 3
    assert result["embedding_cache"] is None  # the model-level cache would freeze the projection's input path
    after = _state(swapped)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"encoder.projection.weight", "encoder.projection.bias"}
    assert sum(calls) == 2  # the two distinct enrollments went through ECAPA once each, then came from its cache
    last = load_model(tmp_path / "run" / "last")
    assert torch.equal(last.encoder.projection.weight, swapped.encoder.projection.weight)
