"""Training and inference speed on the CPU, and before/after ratios of three speed changes measured in one run.

table: steps/s of each backbone's preset (``small``) with the frozen d-vector, batch × segment of simulated
mixtures from the bundled corpus, negative SI-SDR, AdamW (data simulation included).

Ratios (each: the same weights and batches before and after, timed in alternating rounds; a ratio is the median
over rounds of before/after time, > 1 means after is faster; training steps on pre-made batches with the frozen
encoder's embeddings, inference ``TSEModel.extract`` of one --infer-seconds mixture without gradients):

- pad: the non-causal TCN blocks' old ``F.pad`` copy before each depthwise conv (recreated here on the blocks
  of speakerbeam and spexplus) vs the conv's own padding (the code now);
- compile: eager vs ``torch.compile`` (inductor; its compile time is reported, not timed);
- channels-last: contiguous vs ``torch.channels_last`` for the backbones with 2-D convolutions (channels-last is
  a memory format of 4-D tensors; a Conv1d backbone's [B, C, T] activations have none, so it does not apply).

Usage: python experiments/bench_train.py [--threads 2] [--steps 20] [--rounds 3] [--parts table,pad,compile,channels-last]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import tsekit
from tsekit.data import DEMO_CORPUS, MixtureSimulator, SimulationConfig, load_corpus
from tsekit.engine import collate
from tsekit.losses import parse_loss

PARTS = ("table", "pad", "compile", "channels-last")


def simulator(model: Any, seconds: float) -> MixtureSimulator:
    corpus = load_corpus(DEMO_CORPUS / "manifest.csv")
    return MixtureSimulator(corpus, SimulationConfig(sample_rate=model.sample_rate, segment_seconds=seconds,
                                                     enrollment_seconds=3.0), length=10_000)


def table(args: argparse.Namespace) -> None:
    loss_fn = parse_loss("si-sdr")
    print(f"| backbone ({args.preset}) | rate | trainable params | steps/s | s/step |")
    print("|---|---|---|---|---|")
    for spec in tsekit.get_registry().list("backbone"):
        if args.backbones and spec.name not in args.backbones:
            continue
        model = tsekit.build("dvector", None, spec.name, preset=args.preset).train()
        sim = simulator(model, args.seconds)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

        def step(i: int, model: Any = model, sim: Any = sim, opt: Any = opt) -> None:
            batch = collate([sim[j] for j in range(i * args.batch, (i + 1) * args.batch)])
            est = model(batch["mixture"], batch["enrollment"])
            loss = loss_fn(est, batch["target"], mixture=batch["mixture"])
            opt.zero_grad()
            loss.backward()
            opt.step()

        step(0)
        t0 = time.perf_counter()
        for i in range(1, args.steps + 1):
            step(i)
        sec = (time.perf_counter() - t0) / args.steps
        trainable = model.parameter_counts()["trainable"]
        print(f"| {spec.name} | {model.sample_rate} | {trainable / 1e6:.2f} M | {1 / sec:.2f} | {sec:.2f} |")


def batches(model: Any, args: argparse.Namespace) -> tuple[list[dict[str, Any]], tuple[Any, Any]]:
    """``--steps`` training batches with the frozen encoder's embeddings, and one inference input."""
    sim = simulator(model, args.seconds)
    made = []
    with torch.no_grad():
        for i in range(args.steps):
            batch = collate([sim[j] for j in range(i * args.batch, (i + 1) * args.batch)])
            batch["embedding"] = model.enroll(batch["enrollment"])
            made.append(batch)
        long = MixtureSimulator(sim.corpus, SimulationConfig(sample_rate=model.sample_rate,
                                                             segment_seconds=args.infer_seconds,
                                                             enrollment_seconds=3.0), length=10)[0]
        inference = (long["mixture"][None], model.enroll(long["enrollment"][None]))
    return made, inference


class Variant:
    """One side of a comparison: a model (own copy, own optimiser) and how it trains and infers."""

    def __init__(self, model: Any, prepare: Callable[[Any], Any] | None = None, compiled: bool = False) -> None:
        self.train_model = copy.deepcopy(model).train()
        self.eval_model = copy.deepcopy(model).eval()
        if prepare is not None:
            prepare(self.train_model)
            prepare(self.eval_model)
        self.opt = torch.optim.AdamW([p for p in self.train_model.parameters() if p.requires_grad], lr=1e-4)
        self.loss = parse_loss("si-sdr")
        self.forward: Any = torch.compile(self.train_model) if compiled else self.train_model
        self.extract: Any = torch.compile(self.eval_model.extract) if compiled else self.eval_model.extract

    def train_step(self, batch: dict[str, Any]) -> None:
        est = self.forward(batch["mixture"], embedding=batch["embedding"])
        loss = self.loss(est, batch["target"], mixture=batch["mixture"])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def infer(self, inputs: tuple[Any, Any]) -> Any:
        with torch.no_grad():
            return self.extract(*inputs)


def compare(label: str, model: Any, before: Variant, after: Variant, args: argparse.Namespace) -> dict[str, Any]:
    """Time ``before`` and ``after`` in alternating rounds; their first calls (compilation, allocations) untimed."""
    train_batches, inference = batches(model, args)
    warm = {}
    for name, side in (("before", before), ("after", after)):
        t0 = time.perf_counter()
        side.train_step(train_batches[0])
        side.infer(inference)
        warm[name] = time.perf_counter() - t0
    same = float((before.infer(inference) - after.infer(inference)).abs().max())
    train = {"before": [], "after": []}
    infer = {"before": [], "after": []}
    for r in range(args.rounds):
        for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
            side = before if name == "before" else after
            t0 = time.perf_counter()
            for batch in train_batches:
                side.train_step(batch)
            train[name].append((time.perf_counter() - t0) / len(train_batches))
            t0 = time.perf_counter()
            for _ in range(args.infer_calls):
                side.infer(inference)
            infer[name].append((time.perf_counter() - t0) / args.infer_calls)
    audio = inference[0].shape[-1] / model.sample_rate
    row = {
        "comparison": label,
        "train_s_before": statistics.median(train["before"]), "train_s_after": statistics.median(train["after"]),
        "train_ratio": statistics.median(b / a for b, a in zip(train["before"], train["after"], strict=True)),
        "rtf_before": statistics.median(infer["before"]) / audio, "rtf_after": statistics.median(infer["after"]) / audio,
        "infer_ratio": statistics.median(b / a for b, a in zip(infer["before"], infer["after"], strict=True)),
        "first_call_s": warm, "max_abs_difference": same,
    }
    print(f"| {label} | {row['train_s_before']:.3f} | {row['train_s_after']:.3f} | {row['train_ratio']:.2f}× | "
          f"{row['rtf_before']:.4f} | {row['rtf_after']:.4f} | {row['infer_ratio']:.2f}× | "
          f"{warm['before']:.1f} / {warm['after']:.1f} | {same:.1e} |", flush=True)
    return row


def padding_blocks(model: Any) -> list[Any]:
    """The TCN blocks (speakerbeam's, spexplus's) whose depthwise conv pads: the non-causal ones."""
    return [block for block in model.modules() if hasattr(block, "side_pad") and block.side_pad is None
            and getattr(getattr(block, "dconv", None), "padding", (0,))[0]]


def old_pad(model: Any) -> None:
    """The blocks' old path: copy the hidden tensor with ``F.pad`` before the depthwise conv, which then does not
    pad (the blocks' ``forward`` pads with ``F.pad`` whenever ``side_pad`` is set)."""
    for block in padding_blocks(model):
        left = block.dconv.padding[0]
        block.side_pad, block.dconv.padding = (left, block.pad - left), (0,)


def to_channels_last(model: Any) -> None:
    model.to(memory_format=torch.channels_last)


def has_conv2d(model: Any) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="training steps timed per backbone (per round in ratios)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0, help="training segment")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of each ratio")
    ap.add_argument("--infer-seconds", type=float, default=4.0)
    ap.add_argument("--infer-calls", type=int, default=5, help="inference calls timed per round")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"any of {', '.join(PARTS)}")
    ap.add_argument("--backbones", default="", help="comma-separated (default: all, or each part's own)")
    ap.add_argument("--compile-backbones", default="speakerbeam", help="backbones of the torch.compile ratio")
    args = ap.parse_args()
    args.backbones = [b for b in args.backbones.split(",") if b]
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        ap.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch} x {args.seconds:g} s, "
          f"{args.steps} timed steps, preset {args.preset}\n")
    if "table" in parts:
        table(args)
        print()
    ratios = [p for p in parts if p != "table"]
    if not ratios:
        return
    print(f"Before/after ({args.rounds} alternating rounds of {args.steps} training steps and {args.infer_calls} "
          f"extractions of {args.infer_seconds:g} s; ratio = before / after time, median over rounds)\n")
    print("| comparison | train s/step before | after | ratio | inference RTF before | after | ratio | "
          "first call s (before / after) | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    if "pad" in ratios:
        for name in args.backbones or ["speakerbeam", "spexplus"]:
            model = tsekit.build("dvector", None, name, preset=args.preset)
            if padding_blocks(model):
                compare(f"{name}: F.pad copy → conv padding", model, Variant(model, old_pad), Variant(model), args)
            else:
                print(f"| {name}: F.pad copy → conv padding | does not apply: no non-causal TCN block |")
    if "compile" in ratios:
        for name in [b for b in args.compile_backbones.split(",") if b]:
            model = tsekit.build("dvector", None, name, preset=args.preset)
            try:
                compare(f"{name}: eager → torch.compile", model, Variant(model), Variant(model, compiled=True), args)
            except Exception as exc:  # no C++ compiler, an unsupported operation: reported, not fatal
                print(f"| {name}: eager → torch.compile | failed: {' '.join(str(exc).split())[:160]} |")
    if "channels-last" in ratios:
        for spec in tsekit.get_registry().list("backbone"):
            if args.backbones and spec.name not in args.backbones:
                continue
            model = tsekit.build("dvector", None, spec.name, preset=args.preset)
            if has_conv2d(model):
                compare(f"{spec.name}: contiguous → channels-last", model, Variant(model),
                        Variant(model, to_channels_last), args)
            else:
                print(f"| {spec.name}: contiguous → channels-last | does not apply: no 2-D convolution "
                      "(channels-last is a memory format of 4-D tensors) |")


if __name__ == "__main__":
    main()
