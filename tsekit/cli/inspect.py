"""``tsekit inspect``: build a model and run it once on bundled speech."""

from __future__ import annotations

import time
from typing import Any


def inspect_model(
    registry: Any,
    *,
    encoder: str,
    fusion: str | None,
    backbone: str,
    adapt_layers: str | None,
    preset: str | None,
    options: dict[str, dict[str, str]],
    seconds: float,
) -> dict[str, Any]:
    import torch

    from tsekit.audio import read_audio
    from tsekit.data import demo_corpus
    from tsekit.model import build

    model = build(
        encoder,
        fusion,
        backbone,
        adapt_layers,
        preset=preset,
        encoder_options=options.get("encoder"),
        fusion_options=options.get("fusion"),
        backbone_options=options.get("backbone"),
        registry=registry,
    ).eval()
    sr = model.sample_rate
    n = int(seconds * sr)
    utts = demo_corpus()
    a, _ = read_audio(utts[0].path, sr)
    b, _ = read_audio(utts[1].path, sr)
    mixture = (a[:n] + b[:n]).unsqueeze(0)
    enrollment = a[n : 2 * n].unsqueeze(0)
    with torch.inference_mode():
        t0 = time.perf_counter()
        emb = model.enroll(enrollment)
        t1 = time.perf_counter()
        out = model.extract(mixture, emb)
        t2 = time.perf_counter()
    assert model.spec is not None
    return {
        "components": {
            "encoder": model.spec.providers.get("encoder", model.spec.encoder),
            "fusion": model.spec.providers["fusion"],
            "backbone": model.spec.providers["backbone"],
        },
        "configs": {
            "encoder": model.spec.encoder_config,
            "fusion": model.spec.fusion_config,
            "backbone": model.spec.backbone_config,
        },
        "adapt_layers": model.spec.adapt_layers,
        "parameters": model.parameter_counts(),
        "sample_rate": sr,
        "input": f"LibriSpeech {utts[0].speaker} + {utts[1].speaker} (bundled), enrollment: later segment of {utts[0].speaker}",
        "seconds": mixture.shape[-1] / sr,
        "enroll_ms": (t1 - t0) * 1000,
        "extract_ms": (t2 - t1) * 1000,
        "rtf": (t2 - t1) / (mixture.shape[-1] / sr),
        "output_shape": list(out.shape),
        "output_finite": bool(torch.isfinite(out).all()),
    }
