"""`tsekit plugins check [--deep]` and the runtime site check in `tsekit.build`, against broken plugins."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import torch

import tsekit
from tsekit.contracts import BackboneCaps, EncoderCaps, Site
from tsekit.errors import TsekitError
from tsekit.nn import Adapter, Backbone
from tsekit.plugins import load_plugins
from tsekit_builtin import core, fusions


@dataclass(frozen=True)
class ToyConfig:
    n_blocks: int = 3
    skip: int = -1  # a block whose adapt() call is left out
    ignore: int = -1  # a block whose adapt() result is thrown away
    init: str = ""  # a torch.nn.init function for the conv weights


class ToyBackbone(Backbone):
    """A few 1x1 convs; ``x = adapt(site, x)`` after each, unless the config breaks that on purpose."""

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(toy_caps(config))
        self.config = config
        self.blocks = torch.nn.ModuleList(torch.nn.Conv1d(4, 4, 1) for _ in range(config.n_blocks))
        for block in self.blocks if config.init else ():
            getattr(torch.nn.init, config.init)(block.weight)

    def forward(self, mixture: torch.Tensor, adapt: Adapter) -> torch.Tensor:
        x = mixture.unsqueeze(1).repeat(1, 4, 1)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.config.ignore:
                adapt(f"block.{i}", x)
            elif i != self.config.skip:
                x = adapt(f"block.{i}", x)
        return x.mean(1)


def toy_caps(config: ToyConfig, default_site: str = "block.0", default_fusion: str = "film") -> BackboneCaps:
    sites = tuple(Site(f"block.{i}", i, 4) for i in range(config.n_blocks))
    return BackboneCaps("time", 8000, False, sites, (default_site,), default_fusion)


class ToyPlugin:
    """Registers one backbone ``toy``; keyword arguments break one declaration."""

    def __init__(self, presets: dict[str, dict[str, Any]] | None = None, caps: Any = toy_caps) -> None:
        self.presets, self.caps = presets, caps

    @tsekit.hookimpl
    def tsekit_register_backbones(self, register: Any) -> None:
        register("toy", ToyBackbone, config=ToyConfig, capabilities=self.caps, presets=self.presets)


def plugin_set(*plugins: Any) -> Any:
    return load_plugins(("core", core), ("fusions", fusions), *plugins, autoload=False)


def check(tsekit_cli: Any, plugins: Any, *flags: str) -> dict[str, Any]:
    result = tsekit_cli(["plugins", "check", *flags, "--json"], plugins)
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1)
    return report


def test_a_sound_plugin_passes_plain_and_deep(tsekit_cli) -> None:
    assert check(tsekit_cli, plugin_set(("toy", ToyPlugin())))["ok"]
    deep = check(tsekit_cli, plugin_set(("toy", ToyPlugin())), "--deep")
    assert deep["ok"], deep["problems"]
    assert set(deep["import_ms"]) == {"core", "fusions"}  # modules; the test's plugin objects have none


def _raising_caps(config: ToyConfig) -> BackboneCaps:
    raise RuntimeError("no caps today")


@pytest.mark.parametrize(
    ("plugin", "problem"),
    [
        (ToyPlugin(caps=_raising_caps), "toy:toy (backbone, default config): capabilities raised RuntimeError: no caps today"),
        (ToyPlugin(presets={"tiny": {"n_block": 1}}), "toy:toy (backbone, preset 'tiny'): backbone 'toy'.n_block: unknown option. Did you mean 'n_blocks'?"),
        (ToyPlugin(caps=lambda c: toy_caps(c, default_site="block.9")), "default site 'block.9' is not one of its sites (block.0 … block.2)"),
        (ToyPlugin(caps=lambda c: toy_caps(c, default_fusion="flim")), "default fusion 'flim': Unknown fusion 'flim'. Did you mean 'film'?"),
        (ToyPlugin(caps=lambda c: EncoderCaps(8, 8000, False, False)), "capabilities must be a BackboneCaps, got EncoderCaps"),
    ],
    ids=["capabilities-raise", "preset-field", "default-site", "default-fusion", "wrong-caps"],
)
def test_plain_check_catches_bad_declarations_without_torch_work(tsekit_cli, plugin: Any, problem: str) -> None:
    report = check(tsekit_cli, plugin_set(("toy", plugin)))
    assert not report["ok"]
    assert any(problem in p for p in report["problems"]), report["problems"]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"skip": 1}, "toy:toy (backbone, default config): adapt() called 0 times at site 'block.1' (once expected)"),
        ({"ignore": 2}, "site 'block.2' is not adapted: the output ignores what adapt() returns there"),
    ],
)
def test_deep_check_runs_the_backbone_and_finds_unadapted_sites(tsekit_cli, options: dict[str, int], problem: str) -> None:
    class Broken(ToyPlugin):
        @tsekit.hookimpl
        def tsekit_register_backbones(self, register: Any) -> None:
            register("toy", lambda config: ToyBackbone(ToyConfig(**options)), config=ToyConfig, capabilities=toy_caps)

    assert check(tsekit_cli, plugin_set(("toy", Broken())))["ok"]  # the declarations are fine
    report = check(tsekit_cli, plugin_set(("toy", Broken())), "--deep")
    assert not report["ok"]
    assert any(problem in p for p in report["problems"]), report["problems"]


def test_deep_check_builds_every_preset(tsekit_cli) -> None:
    presets = {"ortho": {"init": "orthogonal_"}, "typo": {"init": "orthogonl_"}}
    report = check(tsekit_cli, plugin_set(("toy", ToyPlugin(presets=presets))), "--deep")
    (problem,) = report["problems"]
    assert problem.startswith("toy:toy (backbone, preset 'typo'): cannot be built: AttributeError: module "
                              "'torch.nn.init' has no attribute 'orthogonl_' (test_plugin_checks.py:")


def test_a_plain_function_metric_is_caught(tsekit_cli) -> None:
    class FunctionMetric:
        @tsekit.hookimpl
        def tsekit_register_metrics(self, register: Any) -> None:
            register("peak", lambda: (lambda estimate, target, mixture=None, sample_rate=None: 0.0))

    report = check(tsekit_cli, plugin_set(("fm", FunctionMetric())), "--deep")
    assert any(p.startswith("fm:peak (metric, default config): built a function without name") and
               "subclass tsekit.metrics.Metric" in p for p in report["problems"]), report["problems"]


def test_deep_check_warns_about_a_plugin_importing_torch(tsekit_cli, fake_dist) -> None:
    source = "import torch\nimport tsekit\n\n@tsekit.hookimpl\ndef tsekit_register_losses(register):\n    pass\n"
    fake_dist("tsekit-heavy", {"heavy_mod": source}, {"heavy": "heavy_mod"})
    report = check(tsekit_cli, load_plugins(modules=["heavy_mod"], autoload=False), "--deep")
    assert report["ok"], report["problems"]  # slow is a warning, not a failure
    (warning,) = report["warnings"]
    assert warning.startswith("plugin 'heavy_mod' (no distribution) takes ")
    assert "ms of it importing torch" in warning and report["import_ms"]["heavy_mod"] > 100


def test_build_refuses_a_backbone_that_skips_a_site() -> None:
    class Skipper(ToyPlugin):
        @tsekit.hookimpl
        def tsekit_register_backbones(self, register: Any) -> None:
            register("skipper", lambda config: ToyBackbone(ToyConfig(skip=1)), config=ToyConfig, capabilities=toy_caps)

    reg = plugin_set(("skipper", Skipper())).registry
    model = tsekit.build("precomputed", "film", "skipper", "all", encoder_options={"embedding_dim": 4}, registry=reg)
    with pytest.raises(TsekitError) as err:
        model(torch.randn(2, 800), embedding=torch.randn(2, 4))
    assert str(err.value) == (
        "backbone 'skipper' never called adapt() at the requested site 'block.1'; its forward must call "
        "x = adapt(site, x) exactly once at every site"
    )
    sound = tsekit.build("precomputed", "film", "skipper", "0,2", encoder_options={"embedding_dim": 4}, registry=reg)
    assert sound(torch.randn(2, 800), embedding=torch.randn(2, 4)).shape == (2, 800)  # unrequested sites may be skipped


# -- the conformance suite (tsekit.testing) ---------------------------------------------------------


def test_conformance_cases_cover_every_kind_and_preset() -> None:
    from tsekit.testing import iter_cases

    ids = {case.id for case in iter_cases()}
    for expected in ("selector-selectors:cluster", "selector-selectors:mean-weighted", "loss-losses:si-sdr",
                     "loss-losses:speaker-ce-aam", "metric-metrics:pesq-nb", "metric-metrics:si-sdri",
                     "encoder-ecapa:ecapa-tiny", "declarations-backbone-speakerbeam:speakerbeam"):
        assert expected in ids


def test_conformance_reports_a_clash_instead_of_dropping_it() -> None:
    from tsekit.testing import iter_cases

    class OtherFilm:
        @tsekit.hookimpl
        def tsekit_register_fusions(self, register: Any) -> None:
            register("film", fusions.IMPL + ":FiLMFusion", config=fusions.FiLMConfig, capabilities=fusions.FusionCaps())

    reg = plugin_set(("other", OtherFilm())).registry
    cases = {case.id: case for case in iter_cases(reg, provider="other")}
    cases["fusion-other:film"].run()  # still checked, by its qualified name
    with pytest.raises(AssertionError, match="fusion 'film' is provided by several plugins"):
        cases["clash-fusion-film"].run()


def test_conformance_fails_a_plain_function_metric_and_a_tensor_selector() -> None:
    from tsekit.testing import iter_cases

    class ReadmeStyle:
        @tsekit.hookimpl
        def tsekit_register_metrics(self, register: Any) -> None:
            register("peak", lambda: (lambda estimate, target, mixture=None, sample_rate=None: 0.0))

        @tsekit.hookimpl
        def tsekit_register_selectors(self, register: Any) -> None:
            register("average", lambda: (lambda embeddings: embeddings.mean(0)))  # "[N, D] → [D]"

    cases = {case.id: case for case in iter_cases(plugin_set(("readme", ReadmeStyle())).registry, provider="readme")}
    with pytest.raises(AssertionError, match=r"subclass tsekit\.metrics\.Metric"):
        cases["metric-readme:peak"].run()
    with pytest.raises(AssertionError, match="not a ReferenceSelector"):
        cases["selector-readme:average"].run()


# -- the CLI shows plugin components -----------------------------------------------------------------


def test_help_names_plugin_components(tsekit_cli) -> None:
    help_text = " ".join(tsekit_cli(["ablate", "--help"], plugin_set(("toy", ToyPlugin()))).stdout.split())
    assert "Registered encoder: precomputed; fusion: add, attention, concat, film, multiply; backbone: toy;" in help_text


class LoudnessMetric:
    @tsekit.hookimpl
    def tsekit_register_metrics(self, register: Any) -> None:
        from tsekit.metrics import Metric

        class Loudness(Metric):
            name = "loudness"

            def compute(self, estimate: Any, target: Any, mixture: Any, sample_rate: int, **extras: Any) -> float:
                return float((estimate**2).mean())

        register("loudness", Loudness)


def test_eval_summary_shows_plugin_metrics(tsekit_cli, tmp_path) -> None:
    import soundfile as sf

    from tsekit.data import demo_corpus
    from tsekit.data.audio import read_audio
    from tsekit.engine.checkpoint import save_model

    torch.manual_seed(0)
    model_dir = save_model(tsekit.build("dvector", "film", "speakerbeam", preset="tiny"), tmp_path / "model")
    a, b = (read_audio(u.path)[0][:32000].numpy() for u in demo_corpus()[:2])
    for name, data in {"mix": a + b, "target": a, "ref": b}.items():
        sf.write(tmp_path / f"{name}.wav", data, 16000, subtype="FLOAT")
    listing = tmp_path / "mixtures.csv"
    listing.write_text("mixture_id,mixture_path,enrollment_path,target_path\n"
                       f"m0,{tmp_path / 'mix.wav'},{tmp_path / 'ref.wav'},{tmp_path / 'target.wav'}\n")
    ps = load_plugins(("loudness", LoudnessMetric()), autoload=True)
    result = tsekit_cli(["eval", "--model", str(model_dir), "--list", str(listing), "--out", str(tmp_path / "ev"),
                         "--metrics", "si-sdri,loudness"], ps)
    assert result.exit_code == 0, result.output
    rows = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("│")}
    assert {"si-sdri", "loudness"} <= rows, result.stdout
