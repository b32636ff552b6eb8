"""Deployment benchmark: the default model's extraction by PyTorch fp32, ONNX fp32, ONNX int8 and as a stream, side by side.

One evaluation list of held-out speakers (the default model card's test speakers, from --corpus; the bundled
demo corpus's speakers when that corpus is absent) is extracted by every engine, each in a fresh worker process
with --threads threads (torch.set_num_threads / onnxruntime intra-op threads; one inter-op thread). A worker loads
its engine, enrolls every row (not timed), then times extraction alone (`extract(mixture, embedding)`: chunking,
the graph or network, rescaling) over the list, and reports the real-time factor, SI-SDRi (numpy, zero-mean,
as the registered metric) and its peak resident memory (VmHWM: native memory included; an onnxruntime worker never
imports torch). Rounds run every engine in turn, so a load spike hits all alike; speed is reported
as the median over rounds of each engine's RTF ratio to PyTorch fp32 in the same round. Extra onnxruntime
settings (--variants) run as further engines: graph optimisation level, parallel execution, thread count.

Streaming (torch-stream: tsekit.stream; onnx-stream: stream.onnx of tsekit export --stream) feeds each mixture in
--chunk-ms chunks and times every step: RTF, compute per chunk (mean, 95th percentile, max) and the algorithmic
latency (window + lookahead, plus the chunk). It needs a causal model: for a model that is not causal (the default
model) it runs a causal variant of the same config (causal=true, cLN) with untrained weights, whose compute and
memory are the model's but whose SI-SDRi says nothing (printed in parentheses, no Δ).

    python experiments/bench_deploy.py                     # 24 mixtures of 4 s, 3 rounds, 2 threads
    python experiments/bench_deploy.py --quick             # 6 mixtures, 1 round
    python experiments/bench_deploy.py --variants opt=basic,opt=disable,parallel,threads=1
    python experiments/bench_deploy.py --no-stream         # the offline engines only

Writes OUT/bench_deploy.json and prints a table; the exports and the list are kept in OUT for a rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "librispeech-mini" / "train-clean-100.csv"
ENGINES = ("torch-fp32", "onnx-fp32", "onnx-int8")
STREAM_ENGINES = ("torch-stream", "onnx-stream")


def si_sdr(estimate: Any, target: Any, eps: float = 1e-8) -> float:
    """Zero-mean SI-SDR in dB (the registered si-sdr metric's formula)."""
    import numpy as np

    estimate, target = estimate - estimate.mean(), target - target.mean()
    projection = np.dot(estimate, target) / (np.dot(target, target) + eps) * target
    noise = estimate - projection
    return float(10 * np.log10((np.dot(projection, projection) + eps) / (np.dot(noise, noise) + eps)))


def max_rss_mb() -> float:
    """This process's peak resident memory (native allocations included): VmHWM, which starts afresh at exec
    (getrusage's ru_maxrss keeps the parent's peak across fork and exec, and the parent exported with torch)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux; no /proc elsewhere


def worker(engine: str, folder: str, eval_list: str, threads: int, result: str, chunk_ms: float) -> None:
    """Run one engine over the list in this (fresh) process; write its timings, scores and memory."""
    import numpy as np
    import soundfile as sf

    kind, _, variant = engine.partition(":")
    if kind in STREAM_ENGINES:
        stream_worker(kind, folder, eval_list, threads, result, chunk_ms)
        return
    options = dict(item.partition("=")[::2] for item in variant.split(",") if item) if variant else {}
    rss_start = max_rss_mb()
    started = time.perf_counter()
    if kind == "torch-fp32":
        import torch

        import tsekit

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        extractor = tsekit.load_model(folder or None, allow_no_speech=True)
    else:
        from tsekit.onnx_inference import load_onnx_model

        extractor = load_onnx_model(folder, threads=int(options.get("threads", threads)),
                                    optimization=options.get("opt", "all"), sequential="parallel" not in options)
    load_seconds = time.perf_counter() - started
    rows = json.loads(Path(eval_list).read_text())
    audio, embeddings = [], []
    for row in rows:  # reading and enrolling are not timed
        mixture, rate = sf.read(row["mixture"], dtype="float32")
        embeddings.append(extractor.enroll(row["enrollment"]))
        audio.append((mixture, rate, sf.read(row["target"], dtype="float32")[0]))
    extractor.extract(audio[0][0], embeddings[0], sample_rate=audio[0][1])  # warm-up (first-call allocations)
    seconds, spent, gains = 0.0, 0.0, []
    for (mixture, rate, target), embedding in zip(audio, embeddings, strict=True):
        t0 = time.perf_counter()
        estimate, _ = extractor.extract(mixture, embedding, sample_rate=rate)
        spent += time.perf_counter() - t0
        seconds += mixture.shape[-1] / rate
        estimate = estimate.numpy() if hasattr(estimate, "numpy") else np.asarray(estimate)
        gains.append(si_sdr(estimate, target) - si_sdr(mixture, target))
    Path(result).write_text(json.dumps({
        "engine": engine, "rtf": spent / seconds, "extract_seconds": spent, "audio_seconds": seconds,
        "load_seconds": load_seconds, "si_sdri": float(np.mean(gains)), "si_sdri_rows": gains,
        "peak_rss_mb": max_rss_mb(), "rss_at_start_mb": rss_start, "torch_imported": "torch" in sys.modules,
    }))


def stream_worker(kind: str, folder: str, eval_list: str, threads: int, result: str, chunk_ms: float) -> None:
    """A streaming engine over the list: each mixture in ``chunk_ms`` chunks, every ``process`` call timed."""
    import numpy as np
    import soundfile as sf

    rss_start = max_rss_mb()
    started = time.perf_counter()
    if kind == "torch-stream":
        import torch

        import tsekit

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        extractor: Any = tsekit.load_model(folder, allow_no_speech=True)

        def start(embedding: Any) -> Any:
            return tsekit.stream(extractor, embedding, chunk_ms=chunk_ms)

        def as_input(chunk: Any) -> Any:
            return torch.from_numpy(chunk)
    else:
        from tsekit.onnx_inference import load_onnx_model

        extractor = load_onnx_model(folder, threads=threads)

        def start(embedding: Any) -> Any:
            return extractor.stream(embedding, chunk_ms=chunk_ms)

        def as_input(chunk: Any) -> Any:
            return chunk
    load_seconds = time.perf_counter() - started
    from tsekit.onnx_inference import resample

    model_rate = int(extractor.sample_rate)
    rows = json.loads(Path(eval_list).read_text())
    audio, embeddings = [], []
    for row in rows:  # reading, resampling and enrolling are not timed
        mixture, rate = sf.read(row["mixture"], dtype="float32")
        embeddings.append(extractor.enroll(row["enrollment"]))
        audio.append((mixture, rate, sf.read(row["target"], dtype="float32")[0]))

    def run(mixture: Any, embedding: Any, times: list[float]) -> tuple[Any, Any]:
        streamer = start(embedding)
        step, out = streamer.chunk_samples, []
        for begin in range(0, mixture.shape[-1], step):
            piece = as_input(np.ascontiguousarray(mixture[begin : begin + step]))
            t0 = time.perf_counter()
            out.append(np.asarray(streamer.process(piece)))
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out.append(np.asarray(streamer.flush()))
        times.append(time.perf_counter() - t0)
        return np.concatenate(out)[streamer.delay : streamer.delay + mixture.shape[-1]], streamer

    run(resample(audio[0][0], audio[0][1], model_rate)[: model_rate], embeddings[0], [])  # warm-up, not timed
    times: list[float] = []
    seconds, gains, streamer = 0.0, [], None
    for (mixture, rate, target), embedding in zip(audio, embeddings, strict=True):
        estimate, streamer = run(resample(mixture, rate, model_rate), embedding, times)
        seconds += mixture.shape[-1] / rate
        estimate = resample(estimate, model_rate, rate)[: mixture.shape[-1]]
        gains.append(si_sdr(estimate, target[: estimate.shape[-1]]) - si_sdr(mixture, target))
    assert streamer is not None
    steps = np.array(times[:-1]) * 1000  # the process() calls; the last entry is a flush
    Path(result).write_text(json.dumps({
        "engine": kind, "rtf": float(np.sum(times)) / seconds, "extract_seconds": float(np.sum(times)),
        "audio_seconds": seconds, "load_seconds": load_seconds, "si_sdri": float(np.mean(gains)), "si_sdri_rows": gains,
        "peak_rss_mb": max_rss_mb(), "rss_at_start_mb": rss_start, "torch_imported": "torch" in sys.modules,
        "chunk_ms_mean": float(steps.mean()), "chunk_ms_p95": float(np.percentile(steps, 95)),
        "chunk_ms_max": float(steps.max()), "chunks": int(steps.size), "latency": streamer.latency(),
    }))


def make_list(out: Path, corpus_path: Path | None, num: int, seconds: float, seed: int) -> tuple[Path, str]:
    """Mixtures of the default model card's test speakers (held out from its training) → rows as JSON."""
    import tsekit
    from tsekit.data import DEMO_CORPUS, SimulationConfig, load_corpus, read_eval_list, write_fixed_set

    card = json.loads((Path(tsekit.DEFAULT_MODEL) / "card.json").read_text())
    held_out = set(card["test_speakers"])
    if corpus_path is not None and corpus_path.is_file():
        corpus = load_corpus(corpus_path).subset(held_out)
        source = f"{corpus_path} (the card's {len(corpus.speakers)} test speakers)"
    else:
        corpus = load_corpus(DEMO_CORPUS / "manifest.csv")
        source = f"bundled demo corpus ({len(corpus.speakers)} speakers; {corpus_path} is absent)"
    config = SimulationConfig(sample_rate=16000, segment_seconds=seconds, enrollment_seconds=3.0,
                              sir_range=(-5.0, 5.0))
    write_fixed_set(corpus, out / "list", num, config, seed=seed)
    rows = [{"mixture": str(i.mixture), "enrollment": str(i.enrollment), "target": str(i.target)}
            for i in read_eval_list(out / "list" / "mixtures.csv")]
    path = out / "rows.json"
    path.write_text(json.dumps(rows))
    return path, source


def exports(out: Path, model: str | None) -> dict[str, str]:
    """The model's fp32 and int8 exports (made once, kept in OUT)."""
    import tsekit

    folders = {"onnx-fp32": out / "onnx-fp32", "onnx-int8": out / "onnx-int8"}
    for engine, folder in folders.items():
        if not (folder / "manifest.json").is_file():
            print(f"exporting {engine} …", file=sys.stderr, flush=True)
            tsekit.export_model(model, folder, quantize="int8" if engine == "onnx-int8" else None)
    return {engine: str(folder) for engine, folder in folders.items()}


def stream_model(out: Path, model: str | None, chunk_ms: float) -> tuple[dict[str, str], bool]:
    """The folders of the streaming engines: the model itself when it is causal, else a causal variant of its
    config with untrained weights (made once, kept in OUT), and its export with stream.onnx; whether the model is
    the benchmarked one (its SI-SDRi comparable)."""
    import torch

    import tsekit
    from tsekit.engine import save_model

    source = Path(model) if model else Path(tsekit.DEFAULT_MODEL)
    spec_file = next(p for p in (source / "model.json", source / "best" / "model.json", source) if p.is_file())
    spec = json.loads(spec_file.read_text())["model"]
    comparable = bool(spec["backbone_config"].get("causal"))
    folder = spec_file.parent if comparable else out / "causal"
    if not (folder / "model.json").is_file():
        torch.manual_seed(0)
        variant = tsekit.build(spec["encoder"], spec["fusion"], spec["backbone"], list(spec["adapt_layers"]),
                               encoder_options=spec["encoder_config"], fusion_options=spec["fusion_config"],
                               backbone_options={**spec["backbone_config"], "causal": True, "norm": "cLN"})
        save_model(variant, folder, {"note": f"causal variant of {source} with untrained weights (bench_deploy.py)"})
    exported = out / f"onnx-stream-{chunk_ms:g}ms"
    if not (exported / "manifest.json").is_file():
        print("exporting onnx-stream …", file=sys.stderr, flush=True)
        tsekit.export_model(folder, exported, stream=True, chunk_ms=chunk_ms)
    return {"torch-stream": str(folder), "onnx-stream": str(exported)}, comparable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_deploy")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--num", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="", help="extra onnx-fp32 settings, e.g. opt=basic,opt=disable,parallel")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="the streaming engines' chunk")
    parser.add_argument("--no-stream", action="store_true", help="skip the streaming engines")
    parser.add_argument("--quick", action="store_true", help="6 mixtures, 1 round")
    parser.add_argument("--worker", nargs=6, metavar=("ENGINE", "FOLDER", "LIST", "THREADS", "RESULT", "CHUNK_MS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        engine, folder, eval_list, threads, result, chunk_ms = args.worker
        worker(engine, folder, eval_list, int(threads), result, float(chunk_ms))
        return
    if args.quick:
        args.num, args.rounds = 6, 1
    args.out.mkdir(parents=True, exist_ok=True)
    rows, source = make_list(args.out, args.corpus, args.num, args.seconds, args.seed)
    folders = {"torch-fp32": args.model or "", **exports(args.out, args.model)}
    engines = list(ENGINES) + [f"onnx-fp32:{v}" for v in args.variants.split(",") if v]
    comparable = True
    if not args.no_stream:
        stream_folders, comparable = stream_model(args.out, args.model, args.chunk_ms)
        folders.update(stream_folders)
        engines += list(STREAM_ENGINES)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    results: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    load = os.getloadavg()
    for r in range(args.rounds):
        for engine in engines:
            target = args.out / f"result-{r}-{engine.replace(':', '_').replace('=', '-').replace(',', '_')}.json"
            folder = folders[engine.partition(":")[0]]
            cmd = [sys.executable, __file__, "--worker", engine, folder, str(rows), str(args.threads), str(target),
                   str(args.chunk_ms)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"{engine} failed:\n{done.stderr[-3000:]}")
            results[engine].append(json.loads(target.read_text()))
            print(f"round {r + 1}/{args.rounds} {engine}: RTF {results[engine][-1]['rtf']:.4f}", file=sys.stderr,
                  flush=True)
    base = results["torch-fp32"]
    summary = []
    for engine in engines:
        runs = results[engine]
        speedups = [b["rtf"] / e["rtf"] for b, e in zip(base, runs, strict=True)]
        stream = engine in STREAM_ENGINES
        summary.append({
            "engine": engine,
            "si_sdri_comparable": comparable or not stream,
            "rtf_median": statistics.median(e["rtf"] for e in runs),
            "speedup_vs_torch_median": statistics.median(speedups),
            "speedup_vs_torch_rounds": speedups,
            "si_sdri": runs[0]["si_sdri"],
            "si_sdri_delta_vs_torch": runs[0]["si_sdri"] - base[0]["si_sdri"],
            "peak_rss_mb": max(e["peak_rss_mb"] for e in runs),
            "load_seconds_median": statistics.median(e["load_seconds"] for e in runs),
            "torch_imported": runs[0]["torch_imported"],
            **({"chunk_ms_mean_median": statistics.median(e["chunk_ms_mean"] for e in runs),
                "chunk_ms_p95_median": statistics.median(e["chunk_ms_p95"] for e in runs),
                "chunk_ms_max": max(e["chunk_ms_max"] for e in runs), "latency": runs[0]["latency"]}
               if stream else {}),
        })
    report = {"list": source, "mixtures": args.num, "seconds": args.seconds, "threads": args.threads,
              "rounds": args.rounds, "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
              "summary": summary, "runs": results}
    (args.out / "bench_deploy.json").write_text(json.dumps(report, indent=2))
    print(f"{args.num} mixtures of {args.seconds:g} s from {source}; {args.threads} threads; {args.rounds} round(s); "
          f"load average {load[0]:.2f} → {os.getloadavg()[0]:.2f}")
    print(f"{'engine':<24} {'RTF':>8} {'× torch':>8} {'SI-SDRi':>8} {'Δ dB':>7} {'peak RSS':>9} {'torch?':>7}")
    for s in summary:
        gain, delta = f"{s['si_sdri']:.2f}", f"{s['si_sdri_delta_vs_torch']:+.2f}"
        if not s["si_sdri_comparable"]:
            gain, delta = f"({gain})", "—"
        print(f"{s['engine']:<24} {s['rtf_median']:>8.4f} {s['speedup_vs_torch_median']:>8.2f} {gain:>8} "
              f"{delta:>7} {s['peak_rss_mb']:>7.0f} MB {s['torch_imported']!s:>7}")
    streams = [s for s in summary if s["engine"] in STREAM_ENGINES]
    if streams:
        latency = streams[0]["latency"]
        what = ("the model itself (causal)" if comparable else
                "a causal variant of the model's config (causal=true, cLN) with untrained weights: compute and memory "
                "as the model's, SI-SDRi not comparable")
        print(f"streaming: {what}; chunks of {latency['chunk_ms']:g} ms; algorithmic latency {latency['latency_ms']:g} ms "
              f"(window {latency['window_ms']:g} + lookahead {latency['lookahead_ms']:g}) + the chunk")
        for s in streams:
            print(f"  {s['engine']:<22} compute per chunk: mean {s['chunk_ms_mean_median']:.2f} ms, "
                  f"p95 {s['chunk_ms_p95_median']:.2f} ms, max {s['chunk_ms_max']:.2f} ms")


if __name__ == "__main__":
    main()
