"""Streaming causal extraction (tsekit.stream, tsekit extract --stream, stream.onnx) on tiny causal models: the
streamed output is the offline output delayed by ``delay`` samples, for any chunk sizes; state and buffers keep
one size; models that cannot stream are refused in one line; the CLI reads and writes in blocks; the ONNX step
graph with its state as inputs and outputs matches the PyTorch streamer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tsekit
from tsekit.engine.checkpoint import save_model
from tsekit.errors import TsekitError
from tsekit.streaming import Streamer
from tsekit.testing import one_error_line

CAUSAL = {"causal": True, "norm": "cLN"}
MODELS = {
    # (encoder, fusion, backbone, backbone options)
    "speakerbeam": ("precomputed", None, "speakerbeam", CAUSAL),
    "speakerbeam-film-no-pad-end": ("precomputed", "film", "speakerbeam", {**CAUSAL, "pad_end": False}),
    "spexplus": ("precomputed", None, "spexplus", CAUSAL),
    "spexplus-hidden-drop": ("precomputed", None, "spexplus", {**CAUSAL, "site_position": "hidden", "tail": "drop"}),
}
CHUNKINGS = ([1], [7], [160], [13, 250, 3, 64])  # 7, 13, 3: not multiples of any hop
TOLERANCE = 1e-5


def build(encoder: str, fusion: str | None, backbone: str, options: dict[str, Any]) -> Any:
    torch.manual_seed(0)
    return tsekit.build(encoder, fusion, backbone, preset="tiny", backbone_options=options).eval()


def unit(dim: int, seed: int = 1) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(dim, generator=torch.Generator().manual_seed(seed)), dim=0)


def run(streamer: Any, signal: Any, sizes: list[int]) -> Any:
    """Concatenated outputs of ``process`` on consecutive pieces of ``sizes`` (cycled), then ``flush``."""
    pieces, start, i = [], 0, 0
    while start < signal.shape[-1]:
        n = sizes[i % len(sizes)]
        out = streamer.process(signal[start : start + n])
        assert out.shape[-1] == min(n, signal.shape[-1] - start)
        pieces.append(out)
        start, i = start + n, i + 1
    pieces.append(streamer.flush())
    return torch.cat(pieces) if isinstance(pieces[0], torch.Tensor) else np.concatenate(pieces)


@pytest.mark.parametrize("name", list(MODELS))
def test_streaming_equals_the_offline_causal_output(name: str) -> None:
    model = build(*MODELS[name])
    embedding = unit(model.embedding_dim)
    generator = torch.Generator().manual_seed(2)
    for length in (5, 16, 33, 2003):  # shorter than a window, one window, a few frames, many
        signal = 0.3 * torch.randn(length, generator=generator)
        with torch.no_grad():
            offline = model.extract(signal, embedding)
        for sizes in CHUNKINGS:
            streamer = tsekit.stream(model, embedding, chunk_ms=4)  # ≤ 32 samples a step: long chunks take several
            out = run(streamer, signal, sizes)
            delay = streamer.delay
            assert out.shape == (length + delay,)
            assert not out[:delay].any()
            gap = float((out[delay:] - offline).abs().max())
            assert gap <= TOLERANCE, (name, length, sizes, gap)


def test_latency_is_window_plus_lookahead() -> None:
    speakerbeam = tsekit.stream(build(*MODELS["speakerbeam"]), unit(256))
    assert speakerbeam.delay == 15 and speakerbeam.latency_ms == 2.0  # tiny: 16-sample window at 8 kHz
    assert speakerbeam.latency() == {"window_ms": 2.0, "lookahead_ms": 0.0, "latency_ms": 2.0, "hop_ms": 1.0,
                                     "chunk_ms": 20.0, "delay_samples": 15}
    spexplus = tsekit.stream(build(*MODELS["spexplus"]), unit(256))
    assert spexplus.delay == 31  # short window 8 decodes; the long window 32 reads 24 samples ahead of it
    assert (spexplus.latency()["window_ms"], spexplus.latency()["lookahead_ms"], spexplus.latency_ms) == (1.0, 3.0, 4.0)


def test_batches_reset_and_the_extractor_api() -> None:
    model = build(*MODELS["spexplus"])
    embeddings = torch.stack([unit(256, 1), unit(256, 2)])
    signal = 0.3 * torch.randn(2, 900, generator=torch.Generator().manual_seed(3))
    streamer = tsekit.stream(model, embeddings)
    out = torch.cat([streamer.process(signal[:, :450]), streamer.process(signal[:, 450:]), streamer.flush()], dim=1)
    with torch.no_grad():
        offline = model.extract(signal, embeddings)
    assert float((out[:, streamer.delay :] - offline).abs().max()) <= TOLERANCE
    with pytest.raises(TsekitError, match="flushed"):
        streamer.process(signal[:, :10])
    streamer.reset()
    again = torch.cat([streamer.process(signal[:, :100]), streamer.process(signal[:, 100:]), streamer.flush()], dim=1)
    assert torch.equal(again, out)
    from tsekit.inference import Extractor

    single = tsekit.stream(Extractor(model), embeddings[0])  # an Extractor (load_model) works as well
    assert float((run(single, signal[0], [160])[streamer.delay :] - offline[0]).abs().max()) <= TOLERANCE


def test_state_size_stays_constant_over_a_long_stream() -> None:
    model = build(*MODELS["speakerbeam"])
    streamer = tsekit.stream(model, unit(256), chunk_ms=20)
    signal = 0.1 * torch.randn(60 * 8000, generator=torch.Generator().manual_seed(4))  # 60 s at 8 kHz
    sizes, shapes = set(), {k: tuple(v.shape) for k, v in streamer.state.items()}
    for start in range(0, signal.shape[0], 160):
        streamer.process(signal[start : start + 160])
        sizes.add(streamer.carried)
    assert len(sizes) == 1 and next(iter(sizes)) < 2000, sizes  # values carried: no growth with the stream
    assert {k: tuple(v.shape) for k, v in streamer.state.items()} == shapes
    assert streamer.flush().shape == (streamer.delay,)


def test_models_that_cannot_stream_are_refused_in_one_line() -> None:
    cases = [
        (("precomputed", None, "speakerbeam", {}), r"^backbone 'speakerbeam' is not causal; train with causal=true$"),
        (("precomputed", None, "spexplus", {}), r"^backbone 'spexplus' is not causal; train with causal=true$"),
        (("precomputed", "attention", "speakerbeam", CAUSAL), r"^the fusion at tcn\.1 \(attention\) mixes frames"),
        (("precomputed", None, "sepselect", CAUSAL), r"^SepSelect selects among whole separated sources"),
    ]
    for spec, message in cases:
        with pytest.raises(TsekitError, match=message) as caught:
            tsekit.stream(build(*spec), unit(256))
        assert "\n" not in str(caught.value)
    with pytest.raises(TsekitError, match="chunk_ms must be a positive"):
        tsekit.stream(build(*MODELS["speakerbeam"]), unit(256), chunk_ms=0)


def test_a_third_party_backbone_streams_through_the_protocol() -> None:
    """The hook is public: a backbone outside tsekit_builtin implements it (here a framewise gain)."""
    from tsekit.contracts import BackboneCaps, Site
    from tsekit.model import TSEModel
    from tsekit.nn import Backbone, StreamingBackbone, StreamSpec

    class Gain(Backbone):
        def __init__(self) -> None:
            site = Site("frames", 0, 4)
            super().__init__(BackboneCaps("time", 8000, True, (site,), ("frames",)))
            self.proj = torch.nn.Conv1d(1, 4, 4, stride=4)
            self.out = torch.nn.Conv1d(4, 4, 1)

        def gains(self, samples: torch.Tensor, adapt: Any) -> torch.Tensor:
            h = adapt("frames", self.proj(samples.unsqueeze(1)))
            return torch.sigmoid(self.out(h)).transpose(1, 2).flatten(1)  # [B, frames · 4]

        def forward(self, mixture: torch.Tensor, adapt: Any) -> torch.Tensor:
            n = mixture.shape[-1]
            padded = torch.nn.functional.pad(mixture, (0, -n % 4))
            return (padded * self.gains(padded, adapt))[:, :n]

        def stream_spec(self) -> StreamSpec:
            return StreamSpec(hop=4, window=4)

        def stream_state(self, batch: int) -> dict[str, torch.Tensor]:
            return {}

        def stream_step(self, samples: torch.Tensor, state: dict[str, torch.Tensor],
                        adapt: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            return samples * self.gains(samples, adapt), state

        def stream_tail(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.zeros(1, 0)

    torch.manual_seed(0)
    fusion = tsekit.get_registry().create("fusion", "add", channels=4, embedding_dim=8)
    model = TSEModel(tsekit.get_registry().create("encoder", "precomputed", overrides={"embedding_dim": 8}), Gain(),
                     {"frames": fusion}, (Site("frames", 0, 4),)).eval()
    assert isinstance(model.backbone, StreamingBackbone)
    signal = torch.randn(101)
    with torch.no_grad():
        offline = model.extract(signal, unit(8))
    streamer = tsekit.stream(model, unit(8))
    assert float((run(streamer, signal, [5])[streamer.delay :] - offline).abs().max()) <= TOLERANCE


# -- command line -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved causal tiny model that enrolls audio (d-vector × speakerbeam)."""
    return save_model(build("dvector", None, "speakerbeam", CAUSAL), tmp_path_factory.mktemp("causal") / "model")


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3 s two-talker mixture at 8 kHz and an enrollment at 16 kHz, from bundled speech."""
    import soundfile as sf

    from tsekit.data import demo_corpus
    from tsekit.data.audio import read_audio

    root = tmp_path_factory.mktemp("audio")
    a, b = (read_audio(u.path, 8000)[0] for u in demo_corpus()[:2])
    enrollment = read_audio(demo_corpus()[0].path, 16000)[0][-32000:]
    sf.write(root / "mix.wav", (a[:24000] + b[:24000]).numpy(), 8000, subtype="FLOAT")
    sf.write(root / "mix16k.wav", np.zeros(16000, dtype=np.float32) + 0.1, 16000, subtype="FLOAT")
    sf.write(root / "ref.wav", enrollment.numpy(), 16000, subtype="FLOAT")
    return {"mix": root / "mix.wav", "mix16k": root / "mix16k.wav", "ref": root / "ref.wav"}


def test_cli_stream_writes_the_python_streamers_output(tsekit_cli: Any, causal_dir: Path, audio: dict[str, Path],
                                                      tmp_path: Path) -> None:
    import soundfile as sf

    out = tmp_path / "target.wav"
    result = tsekit_cli(["extract", "--stream", "--chunk-ms", "20", "--model", str(causal_dir), "--mix",
                         str(audio["mix"]), "--ref", str(audio["ref"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{out}: 3.00 s at 8000 Hz, streamed in 20 ms chunks; latency 2 ms (window 2 + "
                                    "lookahead 0) + the chunk; compute per chunk mean ")
    assert "p95" in result.stdout and "(150 chunks, real-time factor" in result.stdout
    written, rate = sf.read(out, dtype="float32")
    extractor = tsekit.load_model(causal_dir)
    embedding = extractor.enroll(str(audio["ref"]))
    mixture = torch.from_numpy(sf.read(audio["mix"], dtype="float32")[0])
    streamer = tsekit.stream(extractor, embedding)
    expected = run(streamer, mixture, [160])[streamer.delay :]
    assert rate == 8000 and written.shape == (24000,)
    assert np.array_equal(written, expected.numpy())
    with torch.no_grad():
        offline = extractor.model.extract(mixture, embedding)
    assert float(np.abs(written - offline.numpy()).max()) <= TOLERANCE


def test_cli_stream_reads_the_mixture_in_blocks(tsekit_cli: Any, causal_dir: Path, audio: dict[str, Path],
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mixture is never read whole, and no step sees more than one block."""
    import soundfile as sf

    mix, read, seen = str(audio["mix"]), sf.read, []

    def read_but_not_the_mixture(path: Any, *args: Any, **kwargs: Any) -> Any:
        assert str(path) != mix, "the mixture was read whole"
        return read(path, *args, **kwargs)

    process = Streamer.process

    def spy(self: Streamer, chunk: Any) -> Any:
        seen.append(len(chunk))
        return process(self, chunk)

    monkeypatch.setattr(sf, "read", read_but_not_the_mixture)
    monkeypatch.setattr(Streamer, "process", spy)
    result = tsekit_cli(["extract", "--stream", "--chunk-ms", "10", "--model", str(causal_dir), "--mix", mix,
                         "--ref", str(audio["ref"]), "--out", str(tmp_path / "o.wav")])
    assert result.exit_code == 0, result.output
    assert len(seen) == 300 and max(seen) == 80  # 3 s in 10 ms blocks at 8 kHz


def test_cli_stream_errors_are_one_line(tsekit_cli: Any, tiny_model: Path, causal_dir: Path, audio: dict[str, Path],
                                        tmp_path: Path) -> None:
    common = ["--ref", str(audio["ref"]), "--out", str(tmp_path / "o.wav")]
    line = one_error_line(tsekit_cli(["extract", "--stream", "--model", str(tiny_model), "--mix", str(audio["mix"]),
                                      *common]))
    assert line == "tsekit: error: backbone 'speakerbeam' is not causal; train with causal=true"
    line = one_error_line(tsekit_cli(["extract", "--stream", "--model", str(causal_dir), "--mix",
                                      str(audio["mix16k"]), *common]))
    assert line == (f"tsekit: error: {audio['mix16k']}: 16000 Hz; --stream needs the model's rate (8000 Hz), "
                    "resample it first")
    line = one_error_line(tsekit_cli(["extract", "--stream", "--model", str(causal_dir), "--list", "l.csv",
                                      "--out-dir", str(tmp_path / "d")]))
    assert line == "tsekit: error: --stream takes one --mix, not --list"
    line = one_error_line(tsekit_cli(["extract", "--stream", "--chunk-ms", "-5", "--model", str(causal_dir), "--mix",
                                      str(audio["mix"]), *common]))
    assert line == "tsekit: error: chunk_ms must be a positive number of milliseconds, got -5.0"
    assert not (tmp_path / "o.wav").exists()


# -- ONNX ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A causal tiny model (precomputed embeddings: no enroll graph to export) and its export with stream.onnx."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from tsekit.export import export_model

    model = build(*MODELS["speakerbeam"])
    root = tmp_path_factory.mktemp("onnx")
    return model, export_model(save_model(model, root / "model"), root / "export", stream=True, check=False)


def test_stream_graph_matches_the_pytorch_streamer(exported: tuple[Any, Path], audio: dict[str, Path]) -> None:
    import onnx
    import soundfile as sf

    from tsekit.export import PARITY_TOLERANCE, check_stream_parity
    from tsekit.onnx_inference import load_onnx_model, read_manifest

    model, folder = exported
    graph = read_manifest(folder)["graphs"]["stream"]
    assert graph["file"] == "stream.onnx" and (graph["hop"], graph["window"], graph["lookahead"]) == (8, 16, 0)
    assert (graph["delay_samples"], graph["latency_ms"], graph["chunk_samples"]) == (15, 2.0, 160)
    states = {s["name"]: (s["shape"], s["init"]) for s in graph["states"]}
    assert states["history"] == (["batch", 8], "input") and states["tail"] == (["batch", 8], "zeros")
    assert states["tcn.3"] == (["batch", 32, 16], "zeros") and len(states) == 2 + 4
    proto = onnx.load(str(folder / "stream.onnx"))
    assert [v.name for v in proto.graph.input] == [i["name"] for i in graph["inputs"]]
    assert [v.name for v in proto.graph.output] == [o["name"] for o in graph["outputs"]]

    assert check_stream_parity(model, folder, graph) <= PARITY_TOLERANCE  # what the export's check runs
    embedding = unit(256, 5)
    mixture = sf.read(audio["mix"], dtype="float32")[0]
    for sizes, length in (([1], 2000), ([37], 24000), ([160, 500], 24000)):  # one frame a step, odd, several steps
        ours = run(load_onnx_model(folder).stream(embedding.numpy(), chunk_ms=20), mixture[:length], sizes)
        theirs = run(tsekit.stream(model, embedding), torch.from_numpy(mixture[:length]), sizes).numpy()
        assert ours.shape == theirs.shape == (length + 15,)
        assert float(np.abs(ours - theirs).max() / np.abs(theirs).max()) <= 1e-4, sizes


def test_cli_export_stream_then_extract_with_onnxruntime(tsekit_cli: Any, exported: tuple[Any, Path],
                                                          tiny_model: Path, audio: dict[str, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import soundfile as sf

    from tsekit.onnx_inference import OnnxExtractor, load_onnx_model

    _, folder = exported
    embedding = unit(256, 6).numpy()
    monkeypatch.setattr(OnnxExtractor, "enroll", lambda self, references: embedding)  # no enroll graph here
    out = tmp_path / "o.wav"
    result = tsekit_cli(["extract", "--stream", "--engine", "onnx", "--model", str(folder), "--mix",
                         str(audio["mix"]), "--ref", str(audio["ref"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "latency 2 ms (window 2 + lookahead 0)" in result.stdout
    streamer = load_onnx_model(folder).stream(embedding)
    expected = run(streamer, sf.read(audio["mix"], dtype="float32")[0], [160])[streamer.delay :]
    assert np.array_equal(sf.read(out, dtype="float32")[0], expected)
    line = one_error_line(tsekit_cli(["export", str(tiny_model), "--stream", "--out", str(tmp_path / "x")]))
    assert line == "tsekit: error: backbone 'speakerbeam' is not causal; train with causal=true"
    assert not (tmp_path / "x").exists()
