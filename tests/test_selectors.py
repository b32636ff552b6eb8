"""Reference selectors on real speech from the bundled corpus, embedded with the pretrained d-vector."""

from __future__ import annotations

import pytest
import torch

import tsekit
import tsekit_builtin.selectors as selectors_plugin
from tsekit.data import demo_corpus
from tsekit.data.audio import read_audio
from tsekit.nn import ReferenceSelector, Selection
from tsekit.plugins import load_plugins
from tsekit_builtin.selectors.modules import chunk_reference

SR = 16000
PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7))  # (target A, interferer B): consecutive corpus speakers



@pytest.fixture(scope="module")
def registry():
    return load_plugins(("selectors", selectors_plugin)).registry


@pytest.fixture(scope="module")
def encoder():
    return tsekit.get_registry().create("encoder", "dvector").eval()


@pytest.fixture(scope="module")
def embed(encoder):
    return lambda wav, lengths: encoder(wav, lengths)


@pytest.fixture(scope="module")
def speech():
    corpus = demo_corpus()
    return [read_audio(corpus[i].path, SR)[0] for i in range(2 * len(PAIRS))]


def seg(wav: torch.Tensor, start: float, end: float) -> torch.Tensor:
    return wav[round(start * SR) : round(end * SR)]


def b_overlap(piece: tuple[int, int, int], b_start: int, b_end: int) -> float:
    _, start, end = piece
    return max(0, min(end, b_end) - max(start, b_start)) / (end - start)


def test_registered(registry) -> None:
    assert registry.names("selector") == ["cluster", "first", "longest", "mean"]
    assert registry.get("selector", "ref-selection").name == "cluster"
    for name in registry.names("selector"):
        assert isinstance(registry.create("selector", name), ReferenceSelector)
    with pytest.raises(tsekit.errors.ConfigError):
        registry.create("selector", "cluster", overrides={"min_chunk_seconds": 5.0})
    with pytest.raises(tsekit.errors.ConfigError):
        registry.create("selector", "cluster", overrides={"representative": "mode"})


def test_chunking() -> None:
    assert chunk_reference(100, 200, 100, 50) == [(0, 100)]  # shorter than a chunk: whole
    assert chunk_reference(500, 200, 100, 50, split=600) == [(0, 500)]  # shorter than split: whole
    assert chunk_reference(500, 200, 100, 50) == [(0, 200), (100, 300), (200, 400), (300, 500)]
    assert chunk_reference(540, 200, 200, 50) == [(0, 200), (200, 400), (340, 540)]  # tail ≥ min: end-aligned
    assert chunk_reference(430, 200, 200, 50) == [(0, 200), (200, 430)]  # short tail absorbed


def test_baselines(registry, embed, speech) -> None:
    refs = [seg(speech[0], 0, 1.5), seg(speech[0], 2, 5), seg(speech[1], 0, 2)]
    with torch.no_grad():
        alone = torch.cat([embed(r[None], torch.tensor([r.numel()])) for r in refs])
        first = registry.create("selector", "first").select(refs, embed)
        longest = registry.create("selector", "longest").select(refs, embed)
        mean = registry.create("selector", "mean").select(refs, embed)
        weighted = registry.create("selector", "mean", preset="weighted").select(refs, embed)
    assert isinstance(first, Selection) and first.embedding.shape == (256,)
    assert first.kept == [(0, 0, 24000)] and first.dropped == [(1, 0, 48000), (2, 0, 32000)]
    assert torch.allclose(first.embedding, alone[0], atol=1e-5)
    assert longest.kept == [(1, 0, 48000)] and len(longest.dropped) == 2
    assert torch.allclose(longest.embedding, alone[1], atol=1e-5)
    assert len(mean.kept) == 3 and not mean.dropped
    expected = alone.mean(0) / alone.mean(0).norm()
    assert torch.allclose(mean.embedding, expected, atol=1e-5)  # batched with padding = one by one
    w = torch.tensor([1.5, 3.0, 2.0])[:, None]
    expected = (alone * w).sum(0) / (alone * w).sum(0).norm()
    assert torch.allclose(weighted.embedding, expected, atol=1e-5)
    with pytest.raises(ValueError, match="reference 1"):
        registry.create("selector", "mean").select([refs[0], torch.zeros(2, 100)], embed)
    with pytest.raises(ValueError, match="no enrollment"):
        registry.create("selector", "first").select([], embed)


def test_cluster_edge_cases(registry, embed, speech) -> None:
    cluster = registry.create("selector", "cluster")
    short = seg(speech[0], 1, 1.3)  # far below a chunk: embedded whole
    with torch.no_grad():
        one = cluster.select([short], embed)
        assert one.kept == [(0, 0, short.numel())] and not one.dropped
        assert torch.allclose(one.embedding, embed(short[None], torch.tensor([short.numel()]))[0], atol=1e-5)
        same = cluster.select([seg(speech[0], 0, 3)] * 3, embed)  # identical references: one cluster
        assert len(same.kept) == 3 and not same.dropped and same.details["cluster_pieces"] == {0: 3}
        long = seg(speech[0], 0, 10)
        chunks = cluster.select([long, short], embed)
        assert chunks.details["n_pieces"] == 10  # 2 s chunks every 1 s (9) + the short one whole
        medoid = registry.create("selector", "cluster", preset="medoid").select([long], embed)
        kept = ReferenceSelector.embed_pieces([long], medoid.kept, embed)
        assert any(torch.allclose(medoid.embedding, e, atol=1e-5) for e in kept)  # one kept piece's embedding
        assert medoid.details["medoid"] is not None
        two = registry.create("selector", "cluster", overrides={"n_clusters": 2}).select([long, short], embed)
        assert len(two.details["cluster_pieces"]) == 2 and two.dropped
        strict = registry.create("selector", "cluster", preset="strict").select([long], embed)
        assert strict.kept and set(strict.details["outliers"]) <= set(range(9))
        assert len(strict.kept) + len(strict.dropped) == 9


def test_cluster_drops_another_speakers_reference(registry, embed, encoder, speech) -> None:
    """3 enrollments of A + 1 of B: `cluster` drops B and lands nearer A's held-out embedding than `mean`."""
    cluster, mean = registry.create("selector", "cluster"), registry.create("selector", "mean")
    report = []
    for a, b in PAIRS:
        target, other = speech[a], speech[b]
        refs = [seg(target, 0, 2.5), seg(target, 2.5, 5), seg(other, 0, 3), seg(target, 5, 7.5)]
        with torch.no_grad():
            held_out = encoder(seg(target, 7.5, 10)[None])[0]
            chosen, averaged = cluster.select(refs, embed), mean.select(refs, embed)
        assert [p[0] for p in chosen.dropped] == [2], chosen.details
        assert [p[0] for p in chosen.kept] == [0, 1, 3]
        sim_cluster, sim_mean = float(chosen.embedding @ held_out), float(averaged.embedding @ held_out)
        report.append((a, b, round(sim_cluster, 3), round(sim_mean, 3)))
        assert sim_cluster > sim_mean, report
    print("cos(held-out A, ·) cluster vs mean:", report)


def test_cluster_drops_an_interfering_talker_inside_a_recording(registry, embed, encoder, speech) -> None:
    """A 5 s + B 3 s + A 2.5 s in one recording: chunks of B are dropped; closer to A than the plain embedding."""
    cluster = registry.create("selector", "cluster")
    b_start, b_end = 5 * SR, 8 * SR
    report = []
    for a, b in PAIRS:
        target, other = speech[a], speech[b]
        recording = torch.cat([seg(target, 0, 5), seg(other, 0, 3), seg(target, 5, 7.5)])
        with torch.no_grad():
            held_out = encoder(seg(target, 7.5, 10)[None])[0]
            plain = encoder(recording[None])[0]
            chosen = cluster.select([recording], embed)
        overlaps = [b_overlap(p, b_start, b_end) for p in chosen.kept]
        assert max(overlaps) <= 0.5, (chosen.kept, chosen.details)  # no kept chunk is mostly B
        assert all(b_overlap(p, b_start, b_end) > 0 for p in chosen.dropped)  # only chunks touching B go
        inside_b = [p for p in chosen.kept + chosen.dropped if b_overlap(p, b_start, b_end) == 1]
        assert inside_b and all(p in chosen.dropped for p in inside_b)
        sim_cluster, sim_plain = float(chosen.embedding @ held_out), float(plain @ held_out)
        report.append((a, b, round(sim_cluster, 3), round(sim_plain, 3)))
        assert sim_cluster > sim_plain, report
    print("cos(held-out A, ·) cluster vs whole recording:", report)
