"""The d-vector encoder against resemblyzer itself, on real speech from the bundled corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tsekit
from tsekit.data import demo_corpus
from tsekit.data.audio import read_audio


@pytest.fixture(scope="module")
def encoder():
    return tsekit.get_registry().create("encoder", "dvector").eval()


@pytest.fixture(scope="module")
def speech():
    return [read_audio(u.path, 16000)[0] for u in demo_corpus()[:4]]


def test_matches_resemblyzer_embed_utterance(encoder, speech) -> None:
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume

    reference = VoiceEncoder(device="cpu", verbose=False)
    for wav in speech[:3]:
        for seconds in (1.2, 3.0, 7.5):
            clip = wav[: int(seconds * 16000)]
            ours = encoder(clip.unsqueeze(0))[0].detach().numpy()
            theirs = reference.embed_utterance(normalize_volume(clip.numpy(), -30, increase_only=True))
            cosine = float(np.dot(ours, theirs) / np.linalg.norm(ours) / np.linalg.norm(theirs))
            assert cosine >= 0.99, (seconds, cosine)


def test_batched_with_lengths_equals_one_by_one(encoder, speech) -> None:
    lengths = torch.tensor([48000, 20000, 33333])
    batch = torch.zeros(3, 48000)
    for i, (wav, n) in enumerate(zip(speech, lengths, strict=False)):
        batch[i, :n] = wav[:n]
    with torch.no_grad():
        together = encoder(batch, lengths)
        alone = torch.cat([encoder(speech[i][: int(n)].unsqueeze(0)) for i, n in enumerate(lengths)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_same_speaker_is_closer_than_other_speakers(encoder, speech) -> None:
    with torch.no_grad():
        first = encoder(torch.stack([w[:64000] for w in speech]))  # first 4 s of each speaker
        second = encoder(torch.stack([w[80000:144000] for w in speech]))  # a later, disjoint 4 s
    sim = first @ second.T
    same = sim.diag()
    other = sim[~torch.eye(len(speech), dtype=torch.bool)]
    assert same.min() > other.max(), sim
    assert same.mean() > 0.75 and other.mean() < 0.7, (same.mean(), other.mean())


def test_weights_are_loaded_safely(tmp_path) -> None:
    from safetensors.torch import save_file

    from tsekit.errors import TsekitError

    enc = tsekit.get_registry().create("encoder", "dvector")
    path = tmp_path / "ge2e.safetensors"
    save_file({k: v.contiguous() for k, v in enc.state_dict().items() if not k.startswith("mel.")}, str(path))
    again = tsekit.get_registry().create("encoder", "dvector", overrides={"weights": str(path)})
    wav = torch.randn(1, 16000) * 0.1
    with torch.no_grad():
        assert torch.allclose(enc(wav), again(wav))
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(TsekitError, match=r"bogus\.pt: not a readable weights file"):
        tsekit.get_registry().create("encoder", "dvector", overrides={"weights": str(bogus)})
