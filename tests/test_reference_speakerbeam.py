"""ESPnet's and BUT's TD-SpeakerBeam checkpoints, converted by ``tsekit_builtin.importers.espnet``/``.but``, give
the references' outputs; the reference-exact presets have the references' sizes; the auxiliary network trains.

The fixtures (tests/fixtures/reference/{espnet,but}-td-speakerbeam/README.md) hold each toolkit's config and
weights as it writes them, inputs, and the outputs of its own code for them."""

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
from tsekit_builtin import auxnet, core, fusions, speakerbeam, spexplus
from tsekit_builtin.importers import but, espnet

FIXTURES = Path(__file__).parent / "fixtures" / "reference"
SPEC_KEYS = {"encoder", "fusion", "backbone", "adapt_layers", "encoder_config", "fusion_config", "backbone_config",
             "share_fusion"}
TOLERANCE = 1e-5
EXACT_OPTIONS = ("input_norm", "bias", "norm_eps", "encoder_activation", "pad_end")
"""The options (not sizes) that make speakerbeam's espnet16k/but8k presets reference-exact."""


@pytest.fixture(scope="module")
def registry():
    return load_plugins(
        ("core", core), ("fusions", fusions), ("speakerbeam", speakerbeam), ("auxnet", auxnet), ("spexplus", spexplus)
    ).registry


def read(case: str) -> tuple[dict, dict]:
    folder = FIXTURES / case
    if case.startswith("espnet"):
        config = yaml.safe_load((folder / "config.yaml").read_text())
        return config, torch.load(folder / "valid.loss.best.pth", map_location="cpu", weights_only=True)
    config = yaml.safe_load((folder / "conf.yml").read_text())
    package = torch.load(folder / "best_model.pth", map_location="cpu", weights_only=True)
    return config, package["state_dict"]  # asteroid's package: {model_name, state_dict, model_args, infos}


def convert(case: str, config: dict | None = None, state: dict | None = None) -> tuple[dict, dict]:
    own_config, own_state = read(case)
    converter = espnet.convert if case.startswith("espnet") else but.convert
    return converter(own_config if config is None else config, own_state if state is None else state)


def converted_model(case: str, registry):
    spec, state = convert(case)
    assert set(spec) == SPEC_KEYS
    spec = json.loads(json.dumps(spec))  # as model.json stores it
    model = assemble(plan_from_spec(spec, registry=registry)).eval()
    model.load_state_dict(state, strict=True)
    return spec, model


def reference(case: str) -> tuple[dict, torch.Tensor]:
    """The fixture's inputs (shared by its variants) and the reference's estimates."""
    inputs = load_file(FIXTURES / case.split("/")[0] / "inputs.safetensors")
    return inputs, load_file(FIXTURES / case / "outputs.safetensors")["estimate"]


@pytest.mark.parametrize(
    ("case", "encoder", "site"),
    [
        ("espnet-td-speakerbeam", "speakerbeam-aux", "tcn.4"),
        ("espnet-td-speakerbeam/variants/causal-cln", "speakerbeam-aux", "tcn.2"),
        ("espnet-td-speakerbeam/variants/bn", "speakerbeam-aux", "tcn.0"),
        ("espnet-td-speakerbeam/variants/spk-emb", "precomputed", "tcn.5"),
        ("but-td-speakerbeam", "speakerbeam-aux", "tcn.4"),
        ("but-td-speakerbeam/variants/causal-cln", "speakerbeam-aux", "tcn.2"),
    ],
)
def test_converted_checkpoint_equals_the_reference(registry, case, encoder, site):
    spec, model = converted_model(case, registry)
    assert (spec["encoder"], spec["fusion"], spec["backbone"], spec["adapt_layers"]) == (
        encoder, "multiply", "speakerbeam", [site])
    inputs, expected = reference(case)
    with torch.no_grad():
        if encoder == "precomputed":
            estimate = model(inputs["mixture"], embedding=inputs["embedding"])
        else:  # zero-padded enrollments of three lengths: each equals the reference on its cropped enrollment
            estimate = model(inputs["mixture"], inputs["enrollment"], inputs["enrollment_lengths"])
    assert estimate.shape == expected.shape
    assert float((estimate - expected).abs().max()) < TOLERANCE
    frames = (inputs["mixture"].shape[-1] - 16) // 8 + 1  # the incomplete last frame is dropped: zeros there
    assert torch.equal(estimate[:, (frames - 1) * 8 + 16 :], torch.zeros(3, 5))


@pytest.mark.parametrize(("case", "preset"), [("espnet-td-speakerbeam", "espnet16k"), ("but-td-speakerbeam", "but8k")])
def test_reference_exact_presets_have_the_converted_options(registry, case, preset):
    spec, _ = convert(case)
    backbone = registry.make_config("backbone", "speakerbeam", preset)
    for option in EXACT_OPTIONS:
        assert spec["backbone_config"][option] == getattr(backbone, option), option
    aux = registry.make_config("encoder", "speakerbeam-aux", preset)
    for option in ("share_encoder", "encoder_activation", "input_norm", "bias", "norm_eps", "pre_mask_act"):
        assert spec["encoder_config"][option] == getattr(aux, option), option


def test_presets_have_the_references_parameter_counts(registry):
    """Counted on the references' own classes at their recipes' sizes: ESPnet's ESPnetExtractionModel with
    egs2/librimix/tse1 train_enh_tse_td_speakerbeam_16k.yaml (12 829 249 extractor TCN + 3 371 537 auxiliary
    network + 2 × 8 192 encoder/decoder) and BUT's TimeDomainSpeakerBeam with egs/libri2mix/local/conf.yml
    (4 968 113 masker + 1 719 697 auxiliary network + 2 × 8 192)."""
    exact = {"fusion_options": {"project": False}, "registry": registry}
    model = build("speakerbeam-aux", "multiply", "speakerbeam", preset="espnet16k", encoder_preset="espnet16k", **exact)
    assert model.encoder.shared
    assert model.parameter_counts() == {"encoder": 3_371_537, "fusion": 0, "backbone": 12_845_633,
                                        "total": 16_217_170, "trainable": 16_217_170}
    model = build("speakerbeam-aux", "multiply", "speakerbeam", preset="but8k", encoder_preset="but8k", **exact)
    assert not model.encoder.shared
    assert count_parameters(model.encoder) == 1_719_697 and count_parameters(model) == 6_704_194


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("case", "key", "change"),
    [
        ("espnet-td-speakerbeam", "extractor.tcn.network.1.weight", "drop"),
        ("espnet-td-speakerbeam", "extractor.auxiliary_net.network.4.weight", "reshape"),
        ("espnet-td-speakerbeam", "extractor.tcn.adapt_layer.weight", "add"),
        ("but-td-speakerbeam", "auxiliary.1.filterbank._filters", "drop"),
        ("but-td-speakerbeam", "masker.TCN.3.shared_block.5.gamma", "reshape"),
        ("but-td-speakerbeam", "masker.adapt_layer.transform.0.weight", "add"),
    ],
)
def test_weights_that_do_not_fit_name_the_key(case, key, change):
    _, state = read(case)
    state = dict(state)
    if change == "drop":
        del state[key]
    elif change == "reshape":
        state[key] = torch.zeros(3, 2)
    else:
        state[key] = torch.zeros(2)
    with pytest.raises(ConfigError) as error:
        convert(case, state=state)
    assert repr(key) in one_line(error)


@pytest.mark.parametrize(
    ("case", "section", "key", "value"),
    [
        ("espnet-td-speakerbeam", "extractor_conf", "adapt_layer_type", "concat"),
        ("espnet-td-speakerbeam", "extractor_conf", "adapt_layer_type", "muladd"),
        ("espnet-td-speakerbeam", "extractor_conf", "skip_dim", None),
        ("espnet-td-speakerbeam", "extractor_conf", "norm_type", "GN"),
        ("espnet-td-speakerbeam", "extractor_conf", "i_adapt_layer", 6),
        ("espnet-td-speakerbeam", "extractor_conf", "layers", 3),
        ("espnet-td-speakerbeam", "model_conf", "share_encoder", False),
        ("espnet-td-speakerbeam", "decoder_conf", "stride", 4),
        ("but-td-speakerbeam", "enroll", "adapt_layer_type", "concat"),
        ("but-td-speakerbeam", "filterbank", "fb_name", "stft"),
        ("but-td-speakerbeam", "masknet", "norm_type", "cgLN"),
        ("but-td-speakerbeam", "masknet", "skip_chan", 0),
        ("but-td-speakerbeam", "masknet", "mask_act", "softmax"),
    ],
)
def test_what_is_not_convertible_names_the_config_key(case, section, key, value):
    config, _ = read(case)
    config = {**config, section: {**config[section], key: value}}
    with pytest.raises(ConfigError) as error:
        convert(case, config=config)
    assert one_line(error).startswith(f"{section}.{key}:")


def test_espnet_causal_gln_is_refused():
    config, _ = read("espnet-td-speakerbeam")
    config = {**config, "extractor_conf": {**config["extractor_conf"], "causal": True}}
    with pytest.raises(ConfigError, match=r"^extractor_conf\.norm_type: gLN in a causal model"):
        espnet.convert(config, read("espnet-td-speakerbeam")[1])


def test_weights_saved_before_the_tcn_module_load(registry):
    """Models saved when the TCN's parameters sat on the backbone (``backbone.blocks.0…``) load unchanged."""
    torch.manual_seed(0)
    model = build("precomputed", None, "speakerbeam", preset="tiny", encoder_options={"embedding_dim": 32},
                  registry=registry).eval()
    flat = {k.replace("backbone.tcn.", "backbone."): v for k, v in model.state_dict().items()}
    assert "backbone.blocks.0.in_conv.weight" in flat and not any("tcn." in k for k in flat)
    fresh = build("precomputed", None, "speakerbeam", preset="tiny", encoder_options={"embedding_dim": 32},
                  registry=registry).eval()
    fresh.load_state_dict(flat, strict=True)
    mixture, embedding = torch.randn(2, 1000), torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(fresh(mixture, embedding=embedding), model(mixture, embedding=embedding))


@pytest.mark.parametrize(("backbone", "preset", "encoder_preset"), [("speakerbeam", "small", "small"),
                                                                     ("spexplus", "tiny", "tiny")])
def test_the_auxiliary_network_trains_on_the_shared_encoder(registry, backbone, preset, encoder_preset):
    torch.manual_seed(0)
    model = build("speakerbeam-aux", "multiply", backbone, preset=preset, encoder_preset=encoder_preset,
                  registry=registry)
    assert model.encoder.shared and model.encoder.frontend is None
    assert {id(p) for p in model.encoder.parameters()}.isdisjoint(id(p) for p in model.backbone.parameters())
    rate = model.sample_rate
    mixture, target = torch.randn(2, rate // 2), torch.randn(2, rate // 2)
    enrollment, lengths = torch.randn(2, rate // 2), torch.tensor([rate // 2, rate // 3 + 5])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {name: p.detach().clone() for name, p in model.encoder.named_parameters()}
    loss = (model(mixture, enrollment, lengths) - target).pow(2).mean()
    loss.backward()
    shared = model.backbone.encoder if backbone == "speakerbeam" else model.backbone.encoders[0]
    shared_grad = shared.weight.grad.clone()
    optimizer.step()
    assert torch.isfinite(loss)
    unchanged = {name for name, p in model.encoder.named_parameters() if torch.equal(before[name], p)}
    last = f"tcn.blocks.{len(model.encoder.tcn.blocks) - 1}.res_conv"  # its output feeds nothing
    assert unchanged == {f"{last}.weight", f"{last}.bias"}
    # The enrollment path alone reaches the shared encoder.
    model.zero_grad()
    model.enroll(enrollment, lengths).pow(2).sum().backward()
    assert shared.weight.grad.abs().sum() > 0 and not torch.equal(shared.weight.grad, shared_grad)


def test_own_encoder_when_not_shared(registry):
    torch.manual_seed(0)
    model = build("speakerbeam-aux", None, "speakerbeam", preset="tiny", encoder_preset="tiny",
                  encoder_options={"share_encoder": False}, registry=registry)
    assert not model.encoder.shared and model.encoder.frontend is not None
    model(torch.randn(2, 800), torch.randn(2, 900), torch.tensor([900, 400])).pow(2).mean().backward()
    assert model.encoder.frontend.weight.grad.abs().sum() > 0


def test_sharing_at_another_rate_is_refused(registry):
    with pytest.raises(TsekitError, match=r"sample_rate=16000"):
        build("speakerbeam-aux", None, "speakerbeam", preset="small", encoder_preset="tiny", registry=registry)
