"""Model assembly: encoder × fusion × backbone × adaptation sites → one ``nn.Module``.

What to build is decided and checked by :mod:`tsekit.plan` (torch-free); :func:`assemble` creates a plan's modules.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from tsekit.contracts import Site
from tsekit.errors import TsekitError
from tsekit.nn import Backbone, Fusion, SiteAdapter, SpeakerEncoder, count_parameters
from tsekit.plan import Component, ModelPlan, ModelSpec, PlacementRequest, plan
from tsekit.registry import Registry


class ProjectedEncoder(SpeakerEncoder):
    """A speaker encoder followed by a learned linear projection to ``embedding_dim``.

    Lets a model keep fusions built for another embedding size (see :func:`tsekit.swap.swap_encoder`).
    While the inner encoder is frozen its embeddings are computed without gradients and, in training,
    cached by enrollment content (LRU of ``cache_size``), so only the projection costs anything per step.
    """

    def __init__(self, inner: SpeakerEncoder, embedding_dim: int, cache_size: int = 4096) -> None:
        super().__init__()
        self.inner = inner
        self.projection = nn.Linear(inner.embedding_dim, embedding_dim)
        self.embedding_dim = int(embedding_dim)
        self.sample_rate = inner.sample_rate
        self.embeds_audio = inner.embeds_audio
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    def bind(self, backbone: Backbone) -> None:
        self.inner.bind(backbone)

    def freeze(self) -> ProjectedEncoder:
        self.inner.freeze()
        super().freeze()
        self.clear_cache()
        return self

    def clear_cache(self) -> None:
        """Forget cached inner embeddings (call after changing the inner encoder's weights)."""
        self._cache.clear()

    def embed_inner(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The inner encoder's embedding ``[B, D_inner]`` (cached while it is frozen and we train)."""
        if not self.inner.frozen:
            return self.inner(wav, lengths)
        if not (self.training and self.cache_size > 0):
            with torch.no_grad():
                return self.inner(wav, lengths)
        keys = [self._content_key(wav[i], None if lengths is None else int(lengths[i])) for i in range(wav.shape[0])]
        for i in [i for i, k in enumerate(keys) if k not in self._cache]:  # alone: the bits do not depend on the batch
            with torch.no_grad():
                one = self.inner(wav[i : i + 1], None if lengths is None else lengths[i : i + 1])
            self._cache[keys[i]] = one[0].detach()
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        for k in keys:
            self._cache.move_to_end(k)
        return torch.stack([self._cache[k] for k in keys])

    @staticmethod
    def _content_key(row: Tensor, length: int | None) -> str:
        import hashlib

        data = row.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        return f"{hashlib.sha1(data).hexdigest()}:{row.shape[-1]}:{length}"

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.projection(self.embed_inner(wav, lengths))


class TSEModel(nn.Module):
    """A target-speaker extractor: ``forward(mixture [B,T], enrollment [B,T'])`` → ``[B,T]``.

    ``enroll`` and ``extract`` separate the two halves (enroll once, extract many); ``forward``
    also takes a precomputed ``embedding=[B,D]`` instead of an enrollment.
    """

    def __init__(
        self,
        encoder: SpeakerEncoder,
        backbone: Backbone,
        fusions: Mapping[str, Fusion],
        sites: tuple[Site, ...],
        spec: ModelSpec | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.backbone = backbone
        self.fusions = nn.ModuleDict({_key(s): f for s, f in fusions.items()})
        self.sites = sites
        self.spec = spec
        self._site_keys = {s.name: _key(s.name) for s in sites}

    @property
    def sample_rate(self) -> int:
        return self.backbone.sample_rate

    @property
    def embedding_dim(self) -> int:
        return self.encoder.embedding_dim

    def enroll(self, enrollment: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Enrollment at the model's rate ``[B, T']`` or ``[T']`` → embedding ``[B, D]``."""
        if enrollment.dim() == 1:
            enrollment = enrollment.unsqueeze(0)
        if self.encoder.sample_rate != self.sample_rate:
            from tsekit.data.audio import resample

            enrollment = resample(enrollment, self.sample_rate, self.encoder.sample_rate)
            if lengths is not None:
                ratio = self.encoder.sample_rate / self.sample_rate
                lengths = (lengths.to(torch.float64) * ratio).floor().to(torch.long)
        if self.encoder.frozen:
            with torch.no_grad():
                return self.encoder(enrollment, lengths)
        return self.encoder(enrollment, lengths)

    def reencode(self, wav: Tensor) -> Tensor:
        """Embeddings ``[B, D]`` of waveforms ``[B, T]`` at the model's rate with gradients to ``wav``, also through
        a frozen encoder (whose weights stay fixed): the estimate re-encoded, for an embedding-consistency loss."""
        if self.encoder.sample_rate != self.sample_rate:
            from tsekit.data.audio import resample

            wav = resample(wav, self.sample_rate, self.encoder.sample_rate)
        if isinstance(self.encoder, ProjectedEncoder):
            return self.encoder.projection(self.encoder.inner(wav))
        return self.encoder(wav)

    def embed_sources(self, sources: Tensor) -> Tensor:
        """Embeddings ``[N, D]`` of separated sources ``[N, T]`` (model rate) for the adapter's selection:
        the encoder in eval mode and without gradients, so training statistics are left alone."""
        modes = [(m, m.training) for m in self.encoder.modules()]
        self.encoder.eval()
        try:
            with torch.no_grad():
                return self.enroll(sources)
        finally:
            for module, training in modes:
                module.training = training

    def extract(self, mixture: Tensor, embedding: Tensor) -> Tensor:
        """Mixture ``[B, T]`` or ``[T]`` and embedding ``[B, D]`` → estimate of the same shape."""
        squeeze = mixture.dim() == 1
        if squeeze:
            mixture = mixture.unsqueeze(0)
        if embedding.dim() == 1:
            embedding = embedding.unsqueeze(0)
        if embedding.shape[0] != mixture.shape[0] or embedding.shape[1] != self.embedding_dim:
            raise TsekitError(
                f"embedding has shape {tuple(embedding.shape)}; expected ({mixture.shape[0]}, {self.embedding_dim})"
            )
        fusions: dict[str, Fusion] = {name: self.fusions[key] for name, key in self._site_keys.items()}  # type: ignore[misc]
        embed = self.embed_sources if self.encoder.embeds_audio else None
        adapter = SiteAdapter(fusions, embedding, embed)
        out = self.backbone(mixture, adapter)
        self._check_sites(adapter.applied)
        if out.shape != mixture.shape:
            raise TsekitError(
                f"backbone {type(self.backbone).__name__} returned {tuple(out.shape)} for a mixture of "
                f"{tuple(mixture.shape)}"
            )
        return out.squeeze(0) if squeeze else out

    def _check_sites(self, applied: list[str]) -> None:
        """Every requested site adapted exactly once: a backbone that skips one would train a wrong model."""
        if applied == [s.name for s in self.sites]:
            return
        for site in self.sites:
            count = applied.count(site.name)
            if count != 1:
                backbone = self.spec.backbone if self.spec else type(self.backbone).__name__
                did = "never called adapt()" if count == 0 else f"called adapt() {count} times"
                raise TsekitError(f"backbone '{backbone}' {did} at the requested site '{site.name}'; its forward must "
                                  "call x = adapt(site, x) exactly once at every site")

    def forward(
        self,
        mixture: Tensor,
        enrollment: Tensor | None = None,
        enrollment_lengths: Tensor | None = None,
        *,
        embedding: Tensor | None = None,
    ) -> Tensor:
        if (enrollment is None) == (embedding is None):
            raise TsekitError("pass exactly one of enrollment= or embedding=")
        if embedding is None:
            assert enrollment is not None
            embedding = self.enroll(enrollment, enrollment_lengths)
        return self.extract(mixture, embedding)

    def train(self, mode: bool = True) -> TSEModel:
        """Training mode, except for a backbone or fusion whose parameters are all frozen (as after
        :func:`tsekit.swap.swap_encoder`): it stays in eval mode, so its norms and dropout do not change."""
        super().train(mode)
        if mode:
            for part in (self.backbone, *self.fusions.values()):
                params = list(part.parameters())
                if params and not any(p.requires_grad for p in params):
                    part.eval()
        return self

    def parameter_counts(self) -> dict[str, int]:
        return {
            "encoder": count_parameters(self.encoder),
            "fusion": count_parameters(self.fusions),
            "backbone": count_parameters(self.backbone),
            "total": count_parameters(self),
            "trainable": count_parameters(self, trainable_only=True),
        }


def _key(site: str) -> str:
    return site.replace(".", "__")


def build(
    encoder: str | SpeakerEncoder = "dvector",
    fusion: str | None = None,
    backbone: str = "speakerbeam",
    adapt_layers: PlacementRequest = None,
    *,
    preset: str | None = None,
    encoder_options: Mapping[str, Any] | None = None,
    fusion_options: Mapping[str, Any] | None = None,
    backbone_options: Mapping[str, Any] | None = None,
    encoder_preset: str | None = None,
    share_fusion: bool = False,
    encoder_projection_dim: int | None = None,
    registry: Registry | None = None,
) -> TSEModel:
    """Assemble a TSE model from registered components.

    ``adapt_layers``: where the speaker cue enters (``None``/``"default"`` = the backbone
    paper's site; ``first``, ``last``, ``all``, ``every:N``, indices, site names, several joined
    by ``+`` or ``,``, lists). ``fusion=None`` uses the backbone paper's fusion. ``preset`` selects a
    backbone preset (e.g. ``"small"``). ``encoder`` may also be a ready :class:`SpeakerEncoder` instance.
    ``share_fusion`` uses one fusion module at every chosen site (needs equal site dims).
    ``encoder_projection_dim`` puts a learned linear projection to that size behind the encoder
    (:class:`ProjectedEncoder`; the fusions then see that size), as a swapped encoder has.
    Every decision and check is :func:`tsekit.plan.plan`'s; this only creates the modules.
    """
    model_plan = plan(
        encoder,
        fusion,
        backbone,
        adapt_layers,
        preset=preset,
        encoder_options=encoder_options,
        fusion_options=fusion_options,
        backbone_options=backbone_options,
        encoder_preset=encoder_preset,
        share_fusion=share_fusion,
        encoder_projection_dim=encoder_projection_dim,
        registry=registry,
    )
    return assemble(model_plan, encoder if isinstance(encoder, SpeakerEncoder) else None)


def create_encoder(encoder: Component) -> SpeakerEncoder:
    """The planned encoder's module, which must give the embedding size its capabilities declare."""
    module: SpeakerEncoder = encoder.create()
    declared = encoder.caps.embedding_dim
    if module.embedding_dim != declared:
        raise TsekitError(f"encoder '{encoder.name}' declares embedding_dim {declared} but built {module.embedding_dim}")
    return module


def assemble(model_plan: ModelPlan, encoder: SpeakerEncoder | None = None) -> TSEModel:
    """The modules of a plan (``encoder``: the ready encoder a plan made for an instance was given)."""
    if encoder is None:
        if "encoder" not in model_plan.components:
            raise TsekitError(f"the plan was made for a ready encoder ({model_plan.encoder}); pass it as encoder=")
        encoder = create_encoder(model_plan.components["encoder"])
    if model_plan.encoder_projection_dim is not None:
        encoder = ProjectedEncoder(encoder, model_plan.encoder_projection_dim)
    backbone = model_plan.components["backbone"].create()
    encoder.bind(backbone)
    fusion = model_plan.components["fusion"]
    fusions: dict[str, Fusion] = {}
    shared: Fusion | None = None
    for site in model_plan.sites:
        if model_plan.share_fusion and shared is not None:
            fusions[site.name] = shared
            continue
        fusions[site.name] = shared = fusion.create(channels=site.dim, embedding_dim=model_plan.embedding_dim)
    return TSEModel(encoder, backbone, fusions, model_plan.sites, model_plan.spec())


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
    """Build a model and run it once on bundled speech: components, configs, sites, parameters and timings."""
    import time

    from tsekit.data import demo_corpus
    from tsekit.data.audio import read_audio

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
