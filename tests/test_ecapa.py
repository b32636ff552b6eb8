"""speechbrain ECAPA-TDNN / x-vector encoders: conformance, sizes, pretrained folders, errors."""

import pytest
import torch

import tsekit_builtin.ecapa as ecapa_plugin
from tsekit.errors import TsekitError
from tsekit.plugins import load_plugins
from tsekit.testing import check_encoder

SPKREC_ECAPA_YAML = """\
# speechbrain/spkrec-ecapa-voxceleb style (pretrainer paths, classifier, label encoder left untouched)
n_mels: 80
seed: 1986
__set_seed: !apply:torch.manual_seed [!ref <seed>]
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
out_n_neurons: 7205
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [1024, 1024, 1024, 1024, 3072]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: 192
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 192
    out_neurons: !ref <out_n_neurons>
mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>
label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""



@pytest.fixture(scope="module")
def registry():
    return load_plugins(("ecapa", ecapa_plugin)).registry


def embed(encoder, wav, lengths=None):
    torch.manual_seed(123)  # speechbrain's StatisticsPooling (x-vector) adds tiny random noise
    with torch.no_grad():
        return encoder(wav, lengths)


@pytest.mark.parametrize("name", ["ecapa", "xvector"])
def test_conformance_tiny(registry, name):
    spec = registry.get("encoder", name)
    check_encoder(spec, spec.make_config("tiny"))


def test_parameter_counts(registry):
    def count(name, **overrides):
        return sum(p.numel() for p in registry.create("encoder", name, overrides=overrides).parameters())

    assert count("ecapa", source="none") == 20_767_552  # speechbrain's VoxCeleb ECAPA-TDNN (C=1024): 20.8 M
    assert sum(p.numel() for p in registry.create("encoder", "ecapa", preset="paper").parameters()) == 20_767_552
    assert count("ecapa", source="none", channels=512) == 6_194_048
    assert count("ecapa") == 2_049_952  # the shipped one: C=256
    assert count("xvector") == 4_211_604  # spkrec-xvect-voxceleb: 4.2 M
    caps = registry.capabilities("encoder", "xvector")
    assert (caps.embedding_dim, caps.sample_rate, caps.trainable, caps.frozen) == (512, 16000, True, False)


@pytest.mark.parametrize("name", ["ecapa", "xvector"])
def test_padding_invariance_many_lengths(registry, name):
    torch.manual_seed(0)
    enc = registry.create("encoder", name, preset="tiny").eval()
    wav = torch.randn(3, 12000) * 0.1
    lengths = torch.tensor([9000, 12000, 9000])
    together = embed(enc, wav, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = embed(enc, wav[i : i + 1, :n])[0]
        torch.testing.assert_close(together[i], alone, atol=1e-4, rtol=1e-3)  # x-vector: speechbrain adds ~1e-5 noise
    padded = registry.create("encoder", name, preset="tiny", overrides={"pad_invariant": False})
    padded.load_state_dict(enc.state_dict())
    assert embed(padded.eval(), wav, lengths).shape == together.shape


def test_training_single_utterance_and_too_short(registry):
    enc = registry.create("encoder", "ecapa", preset="tiny").train()
    assert enc(torch.randn(1, 8000) * 0.1).shape == (1, 192)  # batch norm on pooled stats needs care here
    with pytest.raises(TsekitError, match="too short"):
        enc(torch.randn(2, 8000), torch.tensor([8000, 100]))


@pytest.mark.parametrize("name", ["ecapa", "xvector"])
def test_save_and_load_pretrained_folder(registry, tmp_path, name):
    from tsekit_builtin.ecapa.modules import save_pretrained_folder

    torch.manual_seed(0)
    enc = registry.create("encoder", name, preset="tiny")
    enc(torch.randn(4, 16000) * 0.1)  # training step: non-trivial batch-norm statistics
    enc.eval()
    save_pretrained_folder(enc, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"hyperparams.yaml", "embedding_model.ckpt"}
    loaded = registry.create("encoder", name, overrides={"source": str(tmp_path)})  # tiny width from the yaml
    caps = registry.capabilities("encoder", name, registry.make_config("encoder", name, overrides={"source": str(tmp_path)}))
    assert loaded.frozen and caps.frozen and not caps.trainable and caps.pretrained == str(tmp_path)
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.train().training
    wav, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 11000])
    assert torch.equal(embed(enc, wav, lengths), embed(loaded, wav, lengths))
    trainable = registry.create("encoder", name, overrides={"source": str(tmp_path), "frozen": False})
    assert not trainable.frozen and all(p.requires_grad for p in trainable.parameters())


@pytest.mark.parametrize("name", ["ecapa", "xvector"])
def test_bad_checkpoints_name_the_file(registry, tmp_path, name):
    from tsekit_builtin.ecapa.modules import save_pretrained_folder

    save_pretrained_folder(registry.create("encoder", name, preset="tiny"), tmp_path)
    ckpt = tmp_path / "embedding_model.ckpt"
    with pytest.raises(TsekitError, match=r"hyperparams.yaml: .* is .* but the config asks"):
        registry.create("encoder", name, overrides={"source": str(tmp_path), "channels": 128})
    (tmp_path / "hyperparams.yaml").unlink()  # now the defaults (full width) meet tiny weights
    with pytest.raises(TsekitError, match=f"{ckpt}: does not match") as err:
        registry.create("encoder", name, overrides={"source": str(tmp_path)})
    assert "\n" not in str(err.value)
    ckpt.write_bytes(b"\x80\x04 certainly not a checkpoint")
    with pytest.raises(TsekitError, match=f"{ckpt}: not a readable torch checkpoint") as err:
        registry.create("encoder", name, overrides={"source": str(tmp_path)})
    assert "\n" not in str(err.value)
    ckpt.unlink()
    with pytest.raises(TsekitError, match=f"{ckpt}: missing"):
        registry.create("encoder", name, overrides={"source": str(tmp_path)})
    with pytest.raises(TsekitError, match="no such speechbrain pretrained folder"):
        registry.create("encoder", name, overrides={"source": str(tmp_path / "nowhere")})


def test_reads_spkrec_hyperparams_without_running_them(tmp_path):
    from tsekit_builtin.ecapa import EcapaConfig, XvectorConfig, architecture

    (tmp_path / "hyperparams.yaml").write_text(SPKREC_ECAPA_YAML)
    arch = architecture(EcapaConfig(source=str(tmp_path)), "ecapa")
    assert arch.model["channels"] == [1024, 1024, 1024, 1024, 3072]
    assert (arch.embedding_dim, arch.features["n_mels"], arch.model["input_size"], arch.std_norm) == (192, 80, 80, False)
    with pytest.raises(TsekitError, match=r"embedding_model is .*ECAPA_TDNN, not .*Xvector"):
        architecture(XvectorConfig(source=str(tmp_path)), "xvector")
    (tmp_path / "hyperparams.yaml").write_text("embedding_model: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(TsekitError, match=r"hyperparams\.yaml: not a readable hyperparams file"):
        architecture(EcapaConfig(source=str(tmp_path)), "ecapa")


def test_embedding_mean_normalisation(registry, tmp_path):
    from tsekit_builtin.ecapa.modules import save_pretrained_folder

    save_pretrained_folder(registry.create("encoder", "ecapa", preset="tiny"), tmp_path)
    with pytest.raises(TsekitError, match=r"mean_var_norm_emb\.ckpt: missing"):
        registry.create("encoder", "ecapa", overrides={"source": str(tmp_path), "normalize": True})
    mean = torch.randn(192)
    torch.save({"count": 3, "glob_mean": mean, "glob_std": torch.ones(192)}, tmp_path / "mean_var_norm_emb.ckpt")
    plain = registry.create("encoder", "ecapa", overrides={"source": str(tmp_path)})
    normed = registry.create("encoder", "ecapa", overrides={"source": str(tmp_path), "normalize": True})
    wav = torch.randn(1, 8000) * 0.1
    torch.testing.assert_close(embed(normed, wav), embed(plain, wav) - mean)


@pytest.mark.parametrize("name", ["ecapa", "xvector"])
def test_speechbrain_encoder_classifier_agrees(registry, tmp_path, name):
    """The written folder loads in speechbrain itself and gives the same embedding."""
    from speechbrain.inference.speaker import EncoderClassifier

    from tsekit_builtin.ecapa.modules import save_pretrained_folder

    torch.manual_seed(0)
    enc = registry.create("encoder", name, preset="tiny")
    enc(torch.randn(4, 8000) * 0.1)
    save_pretrained_folder(enc.eval(), tmp_path / "model")
    sb = EncoderClassifier.from_hparams(source=str(tmp_path / "model"), savedir=str(tmp_path / "sb"))
    wav = torch.randn(1, 8000) * 0.1
    torch.manual_seed(1)
    expected = sb.encode_batch(wav).squeeze(1)
    torch.manual_seed(1)
    torch.testing.assert_close(enc(wav), expected, atol=1e-6, rtol=1e-5)
