"""What ``tsekit plugins check`` verifies about registered components (:func:`check_plugins`).

:func:`declaration_problems` is torch-free (configs of every preset, capabilities, sites, default fusion);
:func:`build_problems` builds every component and runs a tiny forward per backbone (``--deep``);
:func:`import_times` times each plugin module's import in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tsekit.contracts import BackboneCaps, EncoderCaps, FusionCaps, SelectorCaps
from tsekit.plan import check_fusion_at_site
from tsekit.plugins import _describe

if TYPE_CHECKING:
    from tsekit.plugins import PluginInfo, PluginSet
    from tsekit.registry import ComponentSpec, Registry

SLOW_IMPORT_MS = 100.0
"""A plugin module whose import takes longer than this slows every tsekit command (and ``--help``)."""
CAPS_TYPES: dict[str, type] = {
    "encoder": EncoderCaps,
    "fusion": FusionCaps,
    "backbone": BackboneCaps,
    "selector": SelectorCaps,
}
LAYOUTS = ("BCT", "BCFT")


def _presets(spec: ComponentSpec) -> list[str | None]:
    return [None, *spec.presets]


def _where(spec: ComponentSpec, preset: str | None) -> str:
    return f"{spec.qualified_name} ({spec.kind}" + (f", preset '{preset}')" if preset else ", default config)")


def check_plugins(plugin_set: PluginSet, registry: Registry, *, deep: bool = False) -> dict[str, Any]:
    """What ``tsekit plugins check`` reports: ``{"ok", "problems"}`` (broken or clashing plugins, then each
    component's declaration problems, or with ``deep`` its build problems when its declaration is sound) and
    with ``deep`` also ``"warnings"`` and ``"import_ms"`` (each plugin's import time)."""
    problems = [f"{i.label}: {i.error}" for i in plugin_set.errors()] + [str(c) for c in registry.conflicts]
    for spec in registry.list():
        found = declaration_problems(spec, registry)
        problems += found if found or not deep else build_problems(spec, registry)
    report: dict[str, Any] = {"ok": not problems, "problems": problems}
    if deep:
        times, warnings = import_times(plugin_set)
        warnings += [t.warning for t in times if t.warning]
        report |= {"warnings": warnings, "import_ms": {t.plugin.name: round(t.ms, 1) for t in times}}
    return report


def declaration_problems(spec: ComponentSpec, registry: Registry) -> list[str]:
    """Problems with one component's declarations, for its default config and each preset (torch-free)."""
    problems = []
    for preset in _presets(spec):
        where = _where(spec, preset)
        try:
            config = spec.make_config(preset)
        except Exception as exc:
            problems.append(f"{where}: {exc}")
            continue
        try:
            caps = spec.capabilities_for(config)
        except Exception as exc:
            problems.append(f"{where}: capabilities raised {_describe(exc)}")
            continue
        problems += [f"{where}: {p}" for p in _caps_problems(spec.kind, caps, registry)]
    return problems


def _caps_problems(kind: str, caps: Any, registry: Registry) -> list[str]:
    expected = CAPS_TYPES.get(kind)
    if expected is None:
        return []
    if caps is None and kind == "selector":
        return []
    if not isinstance(caps, expected):
        return [f"capabilities must be a {expected.__name__}, got {type(caps).__name__}"]
    if isinstance(caps, EncoderCaps) and min(caps.embedding_dim, caps.sample_rate) < 1:
        return [f"embedding_dim ({caps.embedding_dim}) and sample_rate ({caps.sample_rate}) must be positive"]
    if isinstance(caps, FusionCaps):
        unknown = [layout for layout in caps.layouts if layout not in LAYOUTS]
        return [f"unknown layout(s) {', '.join(unknown)}; use BCT or BCFT"] if unknown else []
    if isinstance(caps, BackboneCaps):
        return _backbone_problems(caps, registry)
    return []


def _backbone_problems(caps: BackboneCaps, registry: Registry) -> list[str]:
    sites = caps.sites
    if not sites:
        return ["declares no adaptation sites"]
    problems = []
    if [s.index for s in sites] != list(range(len(sites))):
        problems.append(f"site indices must be 0..{len(sites) - 1} in order, got {[s.index for s in sites]}")
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        problems.append(f"site names must be unique, got {', '.join(names)}")
    problems += [f"site '{s.name}' has unknown layout {s.layout}" for s in sites if s.layout not in LAYOUTS]
    problems += [f"site '{s.name}' has channel dim {s.dim}" for s in sites if s.dim < 1]
    missing = [name for name in caps.default_sites if name not in names]
    problems += [f"default site '{name}' is not one of its sites ({names[0]} … {names[-1]})" for name in missing]
    if caps.default_fusion is not None:
        try:
            fusion = registry.get("fusion", caps.default_fusion)
            fusion_caps = fusion.capabilities_for()
        except Exception as exc:
            return [*problems, f"default fusion '{caps.default_fusion}': {exc}"]
        for site in (s for s in sites if s.name in caps.default_sites):
            reason = check_fusion_at_site(fusion.name, fusion_caps, site, site.dim)
            if reason:
                problems.append(f"default fusion: {reason}")
    return problems


# -- --deep: build and run -------------------------------------------------------------------------


def build_problems(spec: ComponentSpec, registry: Registry) -> list[str]:
    """Build the component with its default config and each preset; run a backbone's smallest build."""
    from tsekit.nn import count_parameters

    problems = []
    backbones: list[tuple[int, str | None, Any]] = []
    for preset in _presets(spec):
        where = _where(spec, preset)
        try:
            config = spec.make_config(preset)
            caps = spec.capabilities_for(config)
            built = _build(spec, config, caps)
        except Exception as exc:
            problems.append(f"{where}: cannot be built: {_describe(exc)}")
            continue
        problems += [f"{where}: {p}" for p in _built_problems(spec.kind, built, caps)]
        if spec.kind == "backbone":
            backbones.append((count_parameters(built), preset, built))
    if backbones and not problems:
        _, preset, smallest = min(backbones, key=lambda b: b[0])
        problems += [f"{_where(spec, preset)}: {p}" for p in site_problems(smallest, smallest.caps)]
    return problems


def _build(spec: ComponentSpec, config: Any, caps: Any) -> Any:
    if spec.kind == "fusion":
        channels = 8
        return spec.create(config, channels=channels, embedding_dim=channels if caps.dims == "equal" else 6)
    return spec.create(config)


def _built_problems(kind: str, built: Any, caps: Any) -> list[str]:
    from tsekit import nn
    from tsekit.importing import CheckpointImporter
    from tsekit.vad import VoiceActivityDetector

    base = {"encoder": nn.SpeakerEncoder, "fusion": nn.Fusion, "backbone": nn.Backbone,
            "selector": nn.ReferenceSelector, "importer": CheckpointImporter, "vad": VoiceActivityDetector}.get(kind)
    if base is not None and not isinstance(built, base):
        return [f"built a {type(built).__name__}, not a {base.__module__}.{base.__name__}"]
    if kind == "encoder" and (built.embedding_dim, built.sample_rate) != (caps.embedding_dim, caps.sample_rate):
        return [(f"built embedding_dim {built.embedding_dim} at {built.sample_rate} Hz, but its capabilities "
                 f"declare {caps.embedding_dim} at {caps.sample_rate} Hz")]
    if kind == "backbone" and built.sample_rate != caps.sample_rate:
        return [f"built sample_rate {built.sample_rate}, but its capabilities declare {caps.sample_rate}"]
    if kind == "loss" and not callable(built):
        return [f"built a {type(built).__name__}, which is not callable as loss(estimate, target, **extras)"]
    if kind == "metric":
        return metric_interface_problems(built)
    return []


def metric_interface_problems(metric: Any) -> list[str]:
    """A metric is an object with ``name``, ``higher_is_better``, ``needs`` and ``__call__`` (see tsekit.metrics)."""
    missing = [a for a in ("name", "higher_is_better", "needs") if not hasattr(metric, a)]
    if missing or not callable(metric) or not isinstance(metric.name, str):
        return [(f"built a {type(metric).__name__} without {', '.join(missing) or 'a str name and __call__'}; "
                 "subclass tsekit.metrics.Metric")]
    return []


def site_problems(backbone: Any, caps: BackboneCaps, seconds: float = 0.1) -> list[str]:
    """A tiny forward: every declared site visited once with all requested, and each one's result used."""
    import torch

    from tsekit.nn import Adapter

    class Probe(Adapter):
        def __init__(self, wanted: str | None, perturb: bool) -> None:
            self.wanted, self.perturb = wanted, perturb
            self.visits: list[str] = []

        def wants(self, site: str) -> bool:
            return self.wanted is None or site == self.wanted

        def __call__(self, site: str, x: torch.Tensor) -> torch.Tensor:
            self.visits.append(site)
            return x + torch.randn_like(x) if self.perturb and site == self.wanted else x

    names = [s.name for s in caps.sites]
    mixture = torch.randn(1, max(int(caps.sample_rate * seconds), 64), generator=torch.Generator().manual_seed(0))
    backbone.eval()
    with torch.no_grad():
        probe = Probe(None, False)
        try:
            plain = backbone(mixture, probe)
        except Exception as exc:
            return [f"forward of {mixture.shape[-1]} samples raised {_describe(exc)}"]
        if plain.shape != mixture.shape:
            return [f"forward returned {tuple(plain.shape)} for a mixture of {tuple(mixture.shape)}"]
        problems = [f"adapt() called {probe.visits.count(n)} times at site '{n}' (once expected)"
                    for n in names if probe.visits.count(n) != 1]
        problems += [f"adapt() called at undeclared site '{v}'" for v in dict.fromkeys(probe.visits) if v not in names]
        for name in names:
            if probe.visits.count(name) != 1:
                continue
            perturbed = backbone(mixture, Probe(name, True))
            if torch.equal(perturbed, plain):  # bit-identical: the perturbed features were never used
                problems.append(f"site '{name}' is not adapted: the output ignores what adapt() returns there")
    return problems


# -- import time -----------------------------------------------------------------------------------

_MARK = "tsekit-check: plugin import starts"
_BASELINE = "import tsekit, tsekit.config, tsekit.contracts, tsekit.errors, tsekit.plugins, tsekit.registry"


@dataclass
class ImportTime:
    plugin: PluginInfo
    ms: float
    heaviest: str | None = None
    heaviest_ms: float = 0.0

    @property
    def warning(self) -> str | None:
        if self.ms <= SLOW_IMPORT_MS:
            return None
        culprit = f", {self.heaviest_ms:.0f} ms of it importing {self.heaviest}" if self.heaviest else ""
        return (f"{self.plugin.label} takes {self.ms:.0f} ms to import (over {SLOW_IMPORT_MS:.0f} ms){culprit}: "
                "every tsekit command and --help pays this; import heavy packages only in the modules that "
                "'module:attr' factories name")


def import_times(plugin_set: PluginSet) -> tuple[list[ImportTime], list[str]]:
    """Each loaded plugin module's import time over tsekit's own, in a fresh interpreter; and failures."""
    times, failures = [], []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    for info, _ in plugin_set.loaded():
        module = (info.module or "").partition(":")[0]
        if not module:
            continue
        code = f"{_BASELINE}\nimport sys\nprint({_MARK!r}, file=sys.stderr, flush=True)\nimport {module}\n"
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                              env=env, timeout=120, check=False)
        if done.returncode != 0:
            failures.append(f"{info.label}: cannot time its import: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        times.append(_parse_importtime(info, module, done.stderr))
    return times, failures


def _parse_importtime(info: PluginInfo, module: str, stderr: str) -> ImportTime:
    """Total and heaviest top-level package from ``python -X importtime`` lines after the marker."""
    lines = stderr.split(_MARK, 1)[-1].splitlines()
    total_us = 0
    heaviest: tuple[int, str | None] = (0, None)
    own = module.split(".")[0]
    for line in lines:
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        cumulative, name = int(parts[1]), parts[2].strip()
        depth = (len(parts[2]) - len(parts[2].lstrip()) - 1) // 2
        if depth == 0:
            total_us += cumulative
        elif "." not in name and name != own and cumulative > heaviest[0]:
            heaviest = (cumulative, name)
    return ImportTime(info, total_us / 1000, heaviest[1], heaviest[0] / 1000)
