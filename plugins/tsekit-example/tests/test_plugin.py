"""Installation, CLI view, and behaviour of the example components."""

import json
import subprocess
import sys

import pytest
import torch
import tsekit
from tsekit.plugins import load_plugins

import tsekit_example as example_plugin


def test_entry_point_listed_by_the_cli(tsekit_cli):
    result = tsekit_cli(["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    info = plugins["example"]
    assert info["distribution"] == "tsekit-example"
    assert info["version"] == "0.1.0"
    assert info["status"] == "ok"
    assert not info["builtin"]
    assert info["components"] == {"encoder": ["mfcc-mean"], "fusion": ["gate"]}


def test_plugins_check_reports_nothing_about_this_plugin(tsekit_cli):
    result = tsekit_cli(["plugins", "check", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1)
    assert not [p for p in report["problems"] if "example" in p], report["problems"]  # others' problems are theirs


def test_plugin_module_is_torch_free():
    code = "import sys, tsekit_example; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_qualified_names_resolve():
    reg = tsekit.get_registry()  # the installed entry points
    assert reg.get("encoder", "example:mfcc-mean").name == "mfcc-mean"
    spec = reg.get("fusion", "tsekit-example:gate")  # plugin or distribution name before the colon
    assert (spec.provider.plugin, spec.provider.distribution) == ("example", "tsekit-example")


class _OtherGate:
    """A second plugin that also registers a fusion called 'gate'."""

    def __init__(self, override):
        self.override = override

    @tsekit.hookimpl
    def tsekit_register_fusions(self, register):
        register("gate", "tsekit_example.modules:GateFusion", config=example_plugin.GateConfig, override=self.override)


def test_name_clash_needs_a_qualified_name_or_override():
    reg = load_plugins(("example", example_plugin), ("other", _OtherGate(False)), autoload=False).registry
    with pytest.raises(tsekit.ComponentConflictError, match="other:gate"):
        reg.get("fusion", "gate")
    assert reg.get("fusion", "example:gate").provider.plugin == "example"
    reg = load_plugins(("example", example_plugin), ("other", _OtherGate(True)), autoload=False).registry
    assert reg.get("fusion", "gate").provider.plugin == "other"


def test_config_validation_is_a_config_error():
    reg = load_plugins(("example", example_plugin), autoload=False).registry
    with pytest.raises(tsekit.ConfigError, match="kernel_size"):
        reg.make_config("encoder", "mfcc-mean", overrides={"kernel_size": 4})
    assert reg.make_config("encoder", "mfcc-mean", preset="tiny").embedding_dim == 32


def _encoder(**overrides):
    reg = load_plugins(("example", example_plugin), autoload=False).registry
    torch.manual_seed(0)
    return reg.create("encoder", "mfcc-mean", overrides=overrides).eval()


def test_embedding_depends_on_the_input():
    enc = _encoder()
    torch.manual_seed(1)
    wav = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        a, b = enc(wav)
        again = enc(wav[:1])[0]
    assert a.shape == (128,)
    assert torch.allclose(a.norm(), torch.tensor(1.0), atol=1e-5)
    assert torch.allclose(a, again, atol=1e-5)
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("lengths", [(16000, 12000, 401, 399), (16000, 5000, 100, 1)])
def test_padding_never_changes_an_embedding(lengths):
    enc = _encoder(embedding_dim=16, channels=16)
    torch.manual_seed(2)
    wav = torch.randn(len(lengths), max(lengths))
    with torch.no_grad():
        batched = enc(wav, torch.tensor(lengths))
        alone = torch.cat([enc(wav[i : i + 1, :n]) for i, n in enumerate(lengths)])
    assert torch.allclose(batched, alone, atol=1e-5)


def _neg_si_sdr(estimate, target):
    target = target - target.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / target.pow(2).sum(-1, keepdim=True).clamp_min(1e-8)
    projection = scale * target
    ratio = projection.pow(2).sum(-1) / (estimate - projection).pow(2).sum(-1).clamp_min(1e-8)
    return -10 * torch.log10(ratio.clamp_min(1e-8)).mean()


def test_full_model_trains():
    torch.manual_seed(0)
    model = tsekit.build("mfcc-mean", "gate", "speakerbeam", "all", preset="tiny")
    assert model.spec.providers["encoder"] == "example:mfcc-mean"
    assert model.spec.providers["fusion"] == "example:gate"
    assert len(model.spec.adapt_layers) == len(model.backbone.sites)
    assert any(p.requires_grad for p in model.encoder.parameters())
    sr = model.sample_rate
    target, interferer = torch.randn(2, 2, sr // 4)
    mixture = target + interferer
    enrollment = torch.randn(2, sr // 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(8):
        optimizer.zero_grad()
        loss = _neg_si_sdr(model(mixture, enrollment), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 3, losses  # negative SI-SDR in dB: typically 30+ → ~12
    encoder_grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in encoder_grads)
