"""WeSep's BSRNN and SpEx+ checkpoints, converted by ``tsekit_builtin.importers.wesep``, give WeSep's outputs.

The fixtures (tests/fixtures/reference/wesep-*/README.md) hold WeSep's config.yaml and avg_model.pt as WeSep
writes them, inputs, and the outputs of WeSep's own code for them."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tsekit.errors import ConfigError, TsekitError
from tsekit.model import assemble, build
from tsekit.nn import count_parameters
from tsekit.plan import plan_from_spec
from tsekit.plugins import load_plugins
from tsekit_builtin import bsrnn, core, fusions, joint, spexplus
from tsekit_builtin.importers.wesep import convert

FIXTURES = Path(__file__).parent / "fixtures" / "reference"
SPEC_KEYS = {"encoder", "fusion", "backbone", "adapt_layers", "encoder_config", "fusion_config", "backbone_config",
             "share_fusion"}
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def registry():
    return load_plugins(
        ("core", core), ("fusions", fusions), ("bsrnn", bsrnn), ("spexplus", spexplus), ("joint", joint)
    ).registry


def read(case: str) -> tuple[dict, dict]:
    folder = FIXTURES / case
    config = yaml.safe_load((folder / "config.yaml").read_text())
    saved = torch.load(folder / "avg_model.pt", map_location="cpu", weights_only=True)
    return config, saved["models"][0]  # WeSep's layout: {"models": [state_dict]}


def converted_model(case: str, registry):
    spec, state = convert(*read(case))
    assert set(spec) == SPEC_KEYS
    spec = json.loads(json.dumps(spec))  # as model.json stores it
    model = assemble(plan_from_spec(spec, registry=registry)).eval()
    model.load_state_dict(state, strict=True)
    return spec, model


def tensors(case: str) -> tuple[dict, dict]:
    """The fixture's inputs (shared by its variants) and WeSep's outputs."""
    inputs = load_file(FIXTURES / case.split("/")[0] / "inputs.safetensors")
    return inputs, load_file(FIXTURES / case / "outputs.safetensors")


def max_error(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """WeSep's estimate may be shorter (SpEx+ drops a partial frame); tsekit's is zero past it."""
    covered = reference.shape[-1]
    assert torch.equal(estimate[..., covered:], torch.zeros_like(estimate[..., covered:]))
    return float((estimate[..., :covered] - reference).abs().max())


@pytest.mark.parametrize(
    ("case", "fusion", "sites"),
    [
        ("wesep-bsrnn", "multiply", ["bandsplit"]),
        ("wesep-bsrnn/variants/concat-multifuse", "concat", ["bandsplit", "repeat.0"]),
        ("wesep-bsrnn/variants/film", "film", ["bandsplit"]),
    ],
)
def test_bsrnn_equals_wesep(registry, case, fusion, sites):
    spec, model = converted_model(case, registry)
    assert (spec["encoder"], spec["fusion"], spec["backbone"], spec["adapt_layers"]) == (
        "precomputed", fusion, "bsrnn", sites)
    inputs, outputs = tensors(case)
    for length in (1000, 1024, 300):
        with torch.no_grad():
            estimate = model(inputs[f"mixture_{length}"], embedding=inputs["embedding"])
        assert max_error(estimate, outputs[f"estimate_{length}"]) < TOLERANCE, length


def test_bsrnn_below_one_window_differs_from_wesep(registry):
    """The known limit: below ``win`` samples tsekit zero-pads before its centred STFT, WeSep reflects the signal."""
    _, model = converted_model("wesep-bsrnn", registry)
    inputs, outputs = tensors("wesep-bsrnn")
    with torch.no_grad():
        estimate = model(inputs["mixture_200"], embedding=inputs["embedding"])
    assert estimate.shape == outputs["estimate_200"].shape
    assert max_error(estimate, outputs["estimate_200"]) > TOLERANCE


def test_spexplus_equals_wesep(registry):
    spec, model = converted_model("wesep-spexplus", registry)
    assert (spec["encoder"], spec["fusion"], spec["backbone"]) == ("joint", "add", "spexplus")
    assert spec["adapt_layers"] == ["tcn.0", "tcn.3"] and model.encoder.shared
    inputs, outputs = tensors("wesep-spexplus")
    enrollment = inputs["enrollment"]
    with torch.no_grad():
        logits = model.encoder.speaker_logits(model.enroll(enrollment))
        assert float((logits - outputs["speaker_logits"]).abs().max()) < TOLERANCE
        for length in (1001, 1000, 333):
            estimate = model(inputs[f"mixture_{length}"], enrollment)
            assert torch.equal(estimate, model.backbone.last_scales[:, 0])
            for i, scale in enumerate(("short", "middle", "long")):
                reference = outputs[f"estimate_{scale}_{length}"]
                assert max_error(model.backbone.last_scales[:, i], reference) < TOLERANCE, (length, scale)
        assert outputs["estimate_short_1001"].shape[-1] == 1000  # WeSep drops the partial frame's last sample


def test_spexplus_causal_cln_with_given_embeddings_equals_wesep(registry):
    case = "wesep-spexplus/variants/causal-cln-embedding"
    spec, model = converted_model(case, registry)
    assert spec["encoder"] == "precomputed" and spec["backbone_config"]["causal"]
    inputs, outputs = tensors(case)
    for length in (1001, 333):
        with torch.no_grad():
            model(inputs[f"mixture_{length}"], embedding=inputs["embedding"])
        for i, scale in enumerate(("short", "middle", "long")):
            assert max_error(model.backbone.last_scales[:, i], outputs[f"estimate_{scale}_{length}"]) < TOLERANCE


def one_line_error(kind: type[Exception], case: str, edit) -> str:
    config, state = read(case)
    edit(config, state)
    with pytest.raises(kind) as caught:
        convert(config, state)
    message = str(caught.value)
    assert "\n" not in message
    return message


def model_arg(key: str, value: object = None):
    """An edit that sets WeSep's model argument ``key`` (removes it for ``None``: WeSep's default applies)."""
    def edit(config: dict, state: dict) -> None:
        args = config["model_args"]["tse_model"]
        if value is None:
            del args[key]
        else:
            args[key] = value

    return edit


@pytest.mark.parametrize(
    ("case", "edit", "where"),
    [
        ("wesep-bsrnn", model_arg("feature_dimm", 4), "model_args.tse_model.feature_dimm"),
        ("wesep-bsrnn", model_arg("joint_training", True), "model_args.tse_model.joint_training"),
        ("wesep-bsrnn", model_arg("use_spk_transform"), "model_args.tse_model.use_spk_transform"),
        ("wesep-bsrnn", model_arg("win", "512"), "model_args.tse_model.win"),
        ("wesep-bsrnn", lambda c, s: c["model"].update(tse_model="TFGridNet"), "model.tse_model"),
        ("wesep-spexplus", model_arg("spk_fuse_type", "FiLM"), "model_args.tse_model.spk_fuse_type"),
        ("wesep-spexplus", model_arg("spk_feat", True), "model_args.tse_model.spk_feat"),
        ("wesep-spexplus", model_arg("causal", True), "model_args.tse_model.causal"),
        ("wesep-spexplus", lambda c, s: c["dataset_args"].update(resample_rate="16k"), "dataset_args.resample_rate"),
    ],
    ids=lambda value: value if isinstance(value, str) and "." in value else None,
)
def test_unconvertible_config_names_the_key(case, edit, where):
    assert one_line_error(ConfigError, case, edit).startswith(f"{where}: ")


def test_weights_that_do_not_fit_the_config_name_the_wesep_key():
    message = one_line_error(TsekitError, "wesep-bsrnn", model_arg("feature_dim", 8))
    assert "'BN.0.1.weight'" in message
    message = one_line_error(TsekitError, "wesep-spexplus", lambda c, s: s.update(extra=torch.zeros(1)))
    assert "'extra'" in message


def test_wesep_presets_at_wesep_sizes(registry):
    # Counted from WeSep's modules (cf8ee7f): ConvTasNet with examples/librimix/tse/v2/confs/spexplus.yaml and
    # multi_task off has 11,112,777 parameters; tsekit's adds a redundant bias (512, zero when converted) per fusion.
    model = build("joint", None, "spexplus", preset="wesep", encoder_preset="wesep", registry=registry)
    assert model.spec.fusion == "add" and model.spec.adapt_layers == ["tcn.0", "tcn.8", "tcn.16", "tcn.24"]
    assert count_parameters(model) == 11_112_777 + 4 * 512
    # BSRNN with the v1 bsrnn.yaml (multiply at the band split, embeddings given): 21,435,272.
    model = build("precomputed", None, "bsrnn", preset="wesep", encoder_options={"embedding_dim": 256},
                  registry=registry)
    assert count_parameters(model) == 21_435_272


def test_spexplus_tail_drop_frames_whole_windows_only(registry):
    spec = registry.get("backbone", "spexplus")
    dropping = spec.create(spec.make_config("tiny", {"tail": "drop"})).eval()
    padding = spec.create(spec.make_config("tiny")).eval()
    assert (dropping.num_frames(21), padding.num_frames(21)) == (4, 5)  # window 8, stride 4
    assert dropping.num_frames(5) == padding.num_frames(5) == 1
    model = build("precomputed", None, "spexplus", preset="tiny", backbone_options={"tail": "drop"},
                  encoder_options={"embedding_dim": 4}, registry=registry)
    with torch.no_grad():
        out = model(torch.randn(2, 21), embedding=torch.randn(2, 4))
    assert out.shape == (2, 21) and torch.equal(out[:, 20:], torch.zeros(2, 1)) and out[:, :20].abs().sum() > 0


@pytest.mark.parametrize("fusion", ["add", "concat", "film", "multiply"])
def test_spexplus_hidden_sites(registry, fusion):
    options = {"site_position": "hidden"}
    caps = registry.capabilities("backbone", "spexplus", registry.make_config("backbone", "spexplus", "tiny", options))
    assert caps.default_fusion == "add" and all(site.dim == 32 for site in caps.sites)  # tiny: hid_chan 32
    model = build("precomputed", fusion, "spexplus", "all", preset="tiny", backbone_options=options,
                  encoder_options={"embedding_dim": 4}, registry=registry)
    model(torch.randn(2, 333), embedding=torch.randn(2, 4)).pow(2).sum().backward()
    assert len(model.fusions) == 6
    assert all(any(p.grad.abs().sum() > 0 for p in f.parameters()) for f in model.fusions.values())


def test_joint_pool_drops_a_partial_window_as_maxpool_does():
    from tsekit_builtin.joint.modules import masked_max_pool

    x = torch.randn(3, 2, 7)
    frames = torch.tensor([7, 3, 2])
    pooled, pooled_frames = masked_max_pool(x, frames, keep_partial=False)
    assert pooled_frames.tolist() == [2, 1, 1]  # a lone partial window is kept
    assert torch.equal(pooled[0, :, :2], torch.nn.functional.max_pool1d(x[0], 3))
    assert torch.equal(pooled[1, :, 0], x[1, :, :3].amax(-1))
    assert torch.equal(pooled[2, :, 0], x[2, :, :2].amax(-1))
    assert torch.equal(pooled[1:, :, 1], torch.zeros(2, 2))
    assert masked_max_pool(x, frames)[1].tolist() == [3, 1, 1]  # the default keeps it


def test_defaults_are_unchanged():
    config = spexplus.SpExPlusConfig()
    assert (config.site_position, config.tail, config.gln_eps) == ("input", "pad", 1e-8)
    assert joint.JointConfig().pool_keep_partial
    assert bsrnn.PRESETS["wesep"] == {}
