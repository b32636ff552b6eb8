"""ONNX export (tsekit export) and onnxruntime inference (OnnxExtractor, tsekit extract --engine onnx) on tiny models:
every graph against PyTorch on random noise and bundled speech at several batch sizes and lengths, the manifest,
int8, inference without torch, and the CLI's one-line errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tsekit
from tsekit.engine.checkpoint import save_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from tsekit.export import OPSET, PARITY_TOLERANCE, export_model
from tsekit.onnx_inference import load_onnx_model, read_manifest
from tsekit.testing import one_error_line

COMBINATIONS = {
    # Each encoder on TD-SpeakerBeam; each other backbone with the cheapest encoder that fits it (precomputed: no
    # enroll graph; joint: the backbone's own speech encoder, and SepSelect's selection needs embeddings of audio).
    "speakerbeam-dvector": ("dvector", "speakerbeam", {}),
    "speakerbeam-joint": ("joint", "speakerbeam", {}),
    "speakerbeam-ecapa": ("ecapa", "speakerbeam", {}),
    "speakerbeam-precomputed": ("precomputed", "speakerbeam", {}),
    "voicefilter-precomputed": ("precomputed", "voicefilter", {}),
    "spexplus-joint": ("joint", "spexplus", {}),
    "sepselect-joint": ("joint", "sepselect", {}),
    "bsrnn-precomputed": ("precomputed", "bsrnn", {"num_repeats": 1}),
    "spectron-precomputed": ("precomputed", "spectron", {"n_repeats": 1}),
}


def build_tiny(encoder: str, backbone: str, backbone_options: dict[str, Any]) -> Any:
    torch.manual_seed(0)
    return tsekit.build(encoder, None, backbone, preset="tiny", backbone_options=backbone_options or None,
                        encoder_preset="tiny" if encoder in ("joint", "ecapa") else None).eval()


def relative_gap(ours: Any, theirs: Any) -> float:
    theirs = np.asarray(theirs)
    return float(np.abs(np.asarray(ours) - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``exported(name)``: (model, model folder, exported folder) of a combination, each exported once."""
    done: dict[str, tuple[Any, Path, Path]] = {}

    def get(name: str) -> tuple[Any, Path, Path]:
        if name not in done:
            model = build_tiny(*COMBINATIONS[name])
            root = tmp_path_factory.mktemp(name)
            source = save_model(model, root / "model")
            done[name] = (model, source, export_model(source, root / "onnx"))
        return done[name]

    return get


@pytest.fixture(scope="module")
def speech() -> list[torch.Tensor]:
    from tsekit.data import demo_corpus
    from tsekit.data.audio import read_audio

    return [read_audio(u.path, 16000)[0] for u in demo_corpus()[:4]]


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_onnx_matches_pytorch_on_noise_and_speech(name: str, exported: Any, speech: list[torch.Tensor]) -> None:
    import onnxruntime as ort

    from tsekit.data.audio import resample

    model, _, folder = exported(name)
    manifest = read_manifest(folder)
    assert max(manifest["parity"]["max_relative_difference"].values()) <= PARITY_TOLERANCE  # bundled speech
    extract = ort.InferenceSession(str(folder / "extract.onnx"), providers=["CPUExecutionProvider"])
    enroll = ort.InferenceSession(str(folder / "enroll.onnx"), providers=["CPUExecutionProvider"]) \
        if model.encoder.embeds_audio else None
    assert (enroll is None) == (manifest["graphs"]["enroll"] is None)
    rate, enc_rate = model.sample_rate, model.encoder.sample_rate
    voices, enroll_voices = [resample(x, 16000, rate) for x in speech], [resample(x, 16000, enc_rate) for x in speech]
    generator = torch.Generator().manual_seed(1)
    for batch, seconds in ((1, 0.5), (3, 1.9), (2, 4.3)):  # none of them the traced size or a check's size
        n, m = int(seconds * rate) + 7, int(seconds * enc_rate) + 5
        noise = 0.3 * torch.randn(batch, n, generator=generator)
        talk = torch.stack([voices[i % 4][:n] + voices[(i + 1) % 4][:n] for i in range(batch)])
        for mixture in (noise, talk):
            with torch.no_grad():
                if enroll is not None:
                    enrollment = torch.stack([enroll_voices[i % 4][-m:] for i in range(batch)])
                    embedding = model.encoder(enrollment)
                    (got,) = enroll.run(None, {"enrollment": enrollment.numpy()})
                    assert got.shape == tuple(embedding.shape)
                    assert relative_gap(got, embedding) <= PARITY_TOLERANCE, (name, batch, m)
                else:
                    embedding = torch.nn.functional.normalize(torch.randn(batch, model.embedding_dim), dim=1)
                reference = model.extract(mixture, embedding)
            (estimate,) = extract.run(None, {"mixture": mixture.numpy(), "embedding": embedding.numpy()})
            assert estimate.shape == tuple(mixture.shape)
            assert relative_gap(estimate, reference) <= PARITY_TOLERANCE, (name, batch, n)


def test_manifest_describes_the_graphs(exported: Any) -> None:
    import onnx

    _, source, folder = exported("speakerbeam-dvector")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "tsekit-onnx" and manifest["version"] == 1 and manifest["tsekit"] == tsekit.__version__
    assert manifest["sample_rate"] == 8000 and manifest["enroll_sample_rate"] == 16000
    assert manifest["embedding_dim"] == 256 and manifest["precision"] == "fp32" and manifest["quantization"] is None
    assert manifest["exporter"]["opset"] == OPSET and manifest["exporter"]["torch"] == torch.__version__
    src = manifest["source"]
    assert src["model_json_sha256"] == hashlib.sha256((source / "model.json").read_bytes()).hexdigest()
    assert (src["encoder"], src["backbone"], src["adapt_layers"]) == ("dvector", "speakerbeam", ["tcn.1"])
    extract, enroll = manifest["graphs"]["extract"], manifest["graphs"]["enroll"]
    assert [(i["name"], i["shape"]) for i in extract["inputs"]] == [("mixture", ["batch", "samples"]),
                                                                    ("embedding", ["batch", 256])]
    assert [(o["name"], o["shape"]) for o in extract["outputs"]] == [("estimate", ["batch", "samples"])]
    assert [(i["name"], i["shape"], i["sample_rate"]) for i in enroll["inputs"]] == [
        ("enrollment", ["batch", "samples"], 16000)]
    assert [(o["name"], o["shape"]) for o in enroll["outputs"]] == [("embedding", ["batch", 256])]
    assert manifest["latency"]["mode"] == "offline" and manifest["latency"]["causal"] is False
    for graph in (extract, enroll):
        path = folder / graph["file"]
        assert graph["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert isinstance(graph["min_samples"], int) and 1 <= graph["min_samples"] <= 1000
        proto = onnx.load(str(path))
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == OPSET
        signature = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.input]
        assert signature[0] == ["batch", "samples"]


def test_int8_export_runs_and_stays_close(exported: Any, tmp_path: Path, speech: list[torch.Tensor]) -> None:
    import onnx

    from tsekit.data.audio import resample

    _, source, fp32 = exported("speakerbeam-precomputed")
    int8 = export_model(source, tmp_path / "int8", quantize="int8")
    manifest = read_manifest(int8)
    assert manifest["precision"] == "int8" and manifest["quantization"]["graphs"] == ["extract"]
    assert manifest["quantization"]["extract_snr_db_vs_fp32"] > 15
    ops = {node.op_type for node in onnx.load(str(int8 / "extract.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert (int8 / "extract.onnx").stat().st_size < 0.6 * (fp32 / "extract.onnx").stat().st_size
    mixture = (resample(speech[0], 16000, 8000)[:20000] + resample(speech[1], 16000, 8000)[:20000]).numpy()
    embedding = np.full(256, 1 / 16, dtype=np.float32)
    ours = load_onnx_model(int8, rescale=False).extract(mixture, embedding, sample_rate=8000)[0]
    theirs = load_onnx_model(fp32, rescale=False).extract(mixture, embedding, sample_rate=8000)[0]
    snr = 10 * np.log10(np.sum(theirs**2) / np.sum((ours - theirs) ** 2))
    assert snr > 15, snr


def test_onnx_extractor_matches_the_pytorch_extractor_without_importing_torch(exported: Any, tmp_path: Path,
                                                                             speech: list[torch.Tensor]) -> None:
    import soundfile as sf

    from tsekit.data.audio import resample
    from tsekit.inference import load_model

    _, source, folder = exported("speakerbeam-dvector")
    mixture = resample(speech[0][:80000] + speech[1][:80000], 16000, 8000)  # 5 s at the model's rate
    sf.write(tmp_path / "mix.wav", mixture.numpy(), 8000, subtype="FLOAT")
    sf.write(tmp_path / "ref.wav", speech[0][-48000:].numpy(), 16000, subtype="FLOAT")
    sf.write(tmp_path / "mix44k.wav", resample(mixture, 8000, 44100).numpy(), 44100, subtype="FLOAT")
    code = (
        "import sys, numpy as np\n"
        "from tsekit.onnx_inference import load_onnx_model\n"
        f"ex = load_onnx_model({str(folder)!r}, chunk_seconds=2.0, overlap_seconds=0.5, threads=1)\n"
        f"emb = ex.enroll({str(tmp_path / 'ref.wav')!r})\n"
        f"est, sr = ex.extract({str(tmp_path / 'mix.wav')!r}, emb)\n"
        f"est44, sr44 = ex.extract({str(tmp_path / 'mix44k.wav')!r}, emb)\n"
        f"np.savez({str(tmp_path / 'out.npz')!r}, emb=emb, est=est, sr=sr, n44=est44.shape[0], sr44=sr44)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
    out = np.load(tmp_path / "out.npz")
    assert int(out["sr"]) == 8000 and out["est"].shape == (mixture.shape[0],)
    assert int(out["sr44"]) == 44100 and int(out["n44"]) == sf.info(str(tmp_path / "mix44k.wav")).frames
    torch_extractor = load_model(source, chunk_seconds=2.0, overlap_seconds=0.5, allow_no_speech=True)
    embedding = torch_extractor.enroll(str(tmp_path / "ref.wav"))
    cosine = float(np.dot(out["emb"], embedding.numpy()) / np.linalg.norm(out["emb"]) / np.linalg.norm(embedding))
    assert cosine > 0.99  # the enrollment is resampled (16 → 8 → 16 kHz) by scipy here, by torchaudio there
    estimate, _ = torch_extractor.extract(str(tmp_path / "mix.wav"), torch.from_numpy(out["emb"]))
    assert relative_gap(out["est"], estimate.numpy()) <= PARITY_TOLERANCE  # the same chunks, cross-fades and scale


def test_several_enrollments_give_the_renormalised_mean(exported: Any, speech: list[torch.Tensor]) -> None:
    _, _, folder = exported("speakerbeam-dvector")
    extractor = load_onnx_model(folder)
    first, second = speech[2][:24000].numpy(), speech[2][-24000:].numpy()
    one, two = extractor.enroll(first, sample_rate=16000), extractor.enroll(second, sample_rate=16000)
    both = extractor.enroll([first, second], sample_rate=16000)
    mean = one / np.linalg.norm(one) + two / np.linalg.norm(two)
    assert np.allclose(both, mean / np.linalg.norm(mean), atol=1e-6)


def test_a_precomputed_model_has_no_enroll_graph(exported: Any) -> None:
    from tsekit.errors import TsekitError

    _, _, folder = exported("speakerbeam-precomputed")
    assert not (folder / "enroll.onnx").exists()
    with pytest.raises(TsekitError, match="precomputed embeddings"):
        load_onnx_model(folder).enroll(np.zeros(8000, dtype=np.float32) + 0.1, sample_rate=8000)


# -- command line -----------------------------------------------------------------------------------------------


def test_cli_export_then_extract_with_onnxruntime(tsekit_cli: Any, exported: Any, tmp_path: Path,
                                                   speech: list[torch.Tensor]) -> None:
    import soundfile as sf

    _, source, _ = exported("speakerbeam-precomputed")
    result = tsekit_cli(["export", str(source), "--format", "onnx", "--out", str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {tmp_path / 'onnx'}: extract.onnx (fp32, opset {OPSET}) of precomputed")
    assert read_manifest(tmp_path / "onnx")["graphs"]["enroll"] is None

    _, _, folder = exported("speakerbeam-dvector")
    sf.write(tmp_path / "mix.wav", (speech[0][:32000] + speech[1][:32000]).numpy(), 16000, subtype="FLOAT")
    sf.write(tmp_path / "ref.wav", speech[0][-32000:].numpy(), 16000, subtype="FLOAT")
    args = ["--mix", str(tmp_path / "mix.wav"), "--ref", str(tmp_path / "ref.wav")]
    result = tsekit_cli(["extract", "--engine", "onnx", "--model", str(folder), *args, "--out", str(tmp_path / "o.wav")])
    assert result.exit_code == 0, result.output
    written, rate = sf.read(tmp_path / "o.wav", dtype="float32")
    extractor = load_onnx_model(folder)
    expected, _ = extractor.extract(str(tmp_path / "mix.wav"), extractor.enroll(str(tmp_path / "ref.wav")))
    assert rate == 16000 and np.allclose(written, expected, atol=1e-6)


def test_cli_errors_are_one_line(tsekit_cli: Any, exported: Any, tmp_path: Path) -> None:
    _, source, folder = exported("speakerbeam-precomputed")
    missing = tmp_path / "no-such-model"
    line = one_error_line(tsekit_cli(["export", str(missing), "--out", str(tmp_path / "a")]))
    assert line == f"tsekit: error: {missing}: not a tsekit model (no model.json)"
    line = one_error_line(tsekit_cli(["export", str(source), "--format", "tflite", "--out", str(tmp_path / "b")]))
    assert line == "tsekit: error: unknown export format 'tflite'; choose from onnx"
    line = one_error_line(tsekit_cli(["export", str(source), "--quantize", "int4", "--out", str(tmp_path / "c")]))
    assert line == "tsekit: error: unknown quantisation 'int4'; choose from int8"
    line = one_error_line(tsekit_cli(["export", str(source), "--out", str(folder)]))
    assert line == f"tsekit: error: --out {folder}: exists and is not an empty folder; give a new one"
    common = ["--mix", "m.wav", "--ref", "r.wav", "--out", str(tmp_path / "o.wav")]
    line = one_error_line(tsekit_cli(["extract", "--engine", "onnx", *common]))
    assert line == "tsekit: error: --engine onnx needs --model DIR, a folder written by tsekit export"
    line = one_error_line(tsekit_cli(["extract", "--engine", "onnx", "--model", str(source), *common]))
    assert line == f"tsekit: error: {source}: not an exported model (no manifest.json) (a model folder: export it " \
                   "with tsekit export)"


def test_missing_onnxruntime_names_the_extra(tsekit_cli: Any, exported: Any, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _, source, folder = exported("speakerbeam-precomputed")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    line = one_error_line(tsekit_cli(["export", str(source), "--out", str(tmp_path / "x")]))
    assert line == "tsekit: error: tsekit export --format onnx needs the optional package 'onnxruntime': " \
                   'pip install "tsekit[onnx]"'
    common = ["--mix", "m.wav", "--ref", "r.wav", "--out", str(tmp_path / "o.wav")]
    line = one_error_line(tsekit_cli(["extract", "--engine", "onnx", "--model", str(folder), *common]))
    assert line == "tsekit: error: ONNX inference needs the optional package 'onnxruntime': pip install \"tsekit[onnx]\""
