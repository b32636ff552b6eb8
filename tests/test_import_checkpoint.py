"""``tsekit import-checkpoint``: another toolkit's files become a model folder that extract and load_model use;
weights are never unpickled beyond tensors, and every problem is one line."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

import tsekit
from tsekit import testing
from tsekit.engine.checkpoint import load_model, read_spec
from tsekit.errors import ConfigError
from tsekit.importing import CheckpointImporter

PREFIX = "toy_net."


def toy_spec() -> dict[str, Any]:
    torch.manual_seed(3)
    model = tsekit.build("precomputed", "film", "speakerbeam", preset="tiny", encoder_options={"embedding_dim": 8})
    assert model.spec is not None
    spec = {k: v for k, v in vars(model.spec).items() if k not in ("providers", "encoder_projection_dim")}
    return {"spec": spec, "state": model.state_dict(), "model": model.eval()}


class ToyImporter(CheckpointImporter):
    """A third party's importer: 'toy' checkpoints are tsekit state dicts under another prefix."""

    toolkit = "toy"

    def convert(self, config: Any, state: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if config.get("net") != "tiny-speakerbeam":
            raise ConfigError("net", f"{config.get('net')!r} is not convertible (toy knows tiny-speakerbeam)")
        return TOY["spec"], {k.removeprefix(PREFIX): v for k, v in state.items()}


TOY = toy_spec()


class ToyPlugin:
    @staticmethod
    @tsekit.hookimpl
    def tsekit_register_importers(register: Any) -> None:
        register("toy", ToyImporter, summary="toy checkpoints")


@pytest.fixture
def plugins(make_plugin_set: Any) -> Any:
    return make_plugin_set(("toy", ToyPlugin), autoload=True)


@pytest.fixture
def toy_files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "conf.yml"
    config.write_text("net: tiny-speakerbeam\noptim: {lr: 0.001}\n")
    weights = tmp_path / "model.pth"
    state = {f"module.{PREFIX}{k}": v for k, v in TOY["state"].items()}  # DataParallel names, wrapped
    from torch.torch_version import TorchVersion

    package = {"state_dict": state, "infos": {"epoch": 12, "loss": -3.5}, "torch_version": TorchVersion("2.0.1")}
    torch.save(package, weights)  # as asteroid (BUT) packages a model: the version as a TorchVersion
    return config, weights


def one_error_line(result: Any) -> str:
    line = testing.one_error_line(result)
    assert line.startswith("tsekit: error: "), line
    return line


def test_imported_model_extracts_exactly_as_the_original(tsekit_cli: Any, plugins: Any, toy_files: Any,
                                                         tmp_path: Path) -> None:
    config, weights = toy_files
    out = tmp_path / "imported"
    result = tsekit_cli(["import-checkpoint", "--from", "toy", "--config", str(config), "--weights", str(weights),
                         "--out", str(out)], plugins)
    assert result.exit_code == 0, result.output
    assert "precomputed × film × speakerbeam" in result.stdout
    model = load_model(out, registry=plugins.registry)
    meta = read_spec(out)
    assert meta["imported_from"]["toolkit"] == "toy" and len(meta["imported_from"]["weights_sha256"]) == 64
    torch.manual_seed(0)
    mixture, embedding = torch.randn(2, 4000), torch.randn(2, 8)
    with torch.inference_mode():
        assert torch.equal(model.extract(mixture, embedding), TOY["model"].extract(mixture, embedding))
    for name, tensor in TOY["state"].items():
        assert torch.equal(model.state_dict()[name], tensor)


def test_python_objects_in_weights_are_refused_not_run(tsekit_cli: Any, plugins: Any, toy_files: Any,
                                                      tmp_path: Path) -> None:
    config, _ = toy_files
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"state_dict": Exploit()}))
    out = tmp_path / "never"
    line = one_error_line(tsekit_cli(["import-checkpoint", "--from", "toy", "--config", str(config), "--weights",
                                      str(evil), "--out", str(out)], plugins))
    assert f"{evil}: not loadable with torch.load(weights_only=True)" in line
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unconvertible", "net: 'conformer' is not convertible"),
        ("no-tensors", "no state dict of tensors found"),
        ("missing-config", "--config"),
        ("bad-yaml", "not a readable toy config"),
        ("unknown-toolkit", "importer 'kaldi'"),
        ("out-not-empty", "folder is not empty"),
        ("foreign-weights", "do not fit the toy model"),
    ],
)
def test_problems_are_one_line(tsekit_cli: Any, plugins: Any, toy_files: Any, tmp_path: Path, case: str,
                               expected: str) -> None:
    config, weights = toy_files
    source, out = "toy", tmp_path / "out"
    if case == "unconvertible":
        config.write_text("net: conformer\n")
    elif case == "no-tensors":
        torch.save({"infos": {"epoch": 1}}, weights)
    elif case == "missing-config":
        config = tmp_path / "nope.yml"
    elif case == "bad-yaml":
        config.write_text("net: [unclosed\n")
    elif case == "unknown-toolkit":
        source = "kaldi"
    elif case == "out-not-empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "foreign-weights":
        torch.save({"state_dict": {"toy_net.other.weight": torch.zeros(3)}}, weights)
    line = one_error_line(tsekit_cli(["import-checkpoint", "--from", source, "--config", str(config), "--weights",
                                      str(weights), "--out", str(out)], plugins))
    assert expected in line, line
    if case == "out-not-empty":
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    else:
        assert not out.exists()


REFERENCE = Path(__file__).parent / "fixtures" / "reference"
FIXTURES = {  # importer, config file, weights file (each folder's README says which code produced it)
    "espnet-td-speakerbeam": ("espnet", "config.yaml", "valid.loss.best.pth"),
    "but-td-speakerbeam": ("but", "conf.yml", "best_model.pth"),
    "wesep-bsrnn": ("wesep", "config.yaml", "avg_model.pt"),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_the_cli_turns_a_reference_checkpoint_into_a_model_with_its_outputs(tsekit_cli: Any, tmp_path: Path,
                                                                           name: str) -> None:
    from safetensors.torch import load_file

    source, config, weights = FIXTURES[name]
    folder = REFERENCE / name
    out = tmp_path / "model"
    result = tsekit_cli(["import-checkpoint", "--from", source, "--config", str(folder / config), "--weights",
                         str(folder / weights), "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = load_model(out)
    inputs, outputs = load_file(str(folder / "inputs.safetensors")), load_file(str(folder / "outputs.safetensors"))
    with torch.inference_mode():
        if "mixture_lengths" in inputs:  # one row at a time, each cut to its length
            for i, (m, e) in enumerate(zip(inputs["mixture_lengths"].tolist(), inputs["enrollment_lengths"].tolist(),
                                           strict=True)):
                estimate = model(inputs["mixture"][i : i + 1, :m], inputs["enrollment"][i : i + 1, :e])
                assert (estimate[0] - outputs["estimate"][i, :m]).abs().max() < 1e-5
        else:
            for key in (k for k in inputs if k.startswith("mixture_") and k != "mixture_200"):  # 200 < win: see README
                estimate = model(inputs[key], embedding=inputs["embedding"])
                reference = outputs[key.replace("mixture", "estimate")]
                assert (estimate - reference).abs().max() < 1e-5
