"""Write tsekit's TD-SpeakerBeam reference fixtures from ESPnet's and BUT's own code.

Run with the references on the path (they are imported, nothing of theirs is copied here):

    PYTHONPATH=<espnet-202511 wheel, unzipped>:<BUT speakerbeam 91af02c>/src:<deps> OMP_NUM_THREADS=1 \
        python make_fixtures_speakerbeam.py tests/fixtures/reference

``<deps>``: ``pip install --no-deps --target <deps> torch_complex typeguard ci_sdr asteroid==0.7.0
asteroid-filterbanks==0.4.0 pytorch_lightning lightning_utilities torchmetrics fsspec tqdm`` (ESPnet's and
asteroid's imports; ``pytorch_lightning`` only for the version that asteroid's ``serialize()`` records).

ESPnet (espnet 202511 wheel): the model is composed as ``espnet2/tasks/enh_tse.py: build_model`` does,
``ConvEncoder(**encoder_conf)``, ``TDSpeakerBeamExtractor(encoder.output_dim, **extractor_conf)``,
``ConvDecoder(**decoder_conf)``, ``ESPnetExtractionModel(..., **model_conf)``; outputs come from
``ESPnetExtractionModel.forward_enhance``. BUT (BUTSpeechFIT/speakerbeam 91af02c, asteroid 0.7.0,
asteroid-filterbanks 0.4.0): ``TimeDomainSpeakerBeam`` built as ``egs/libri2mix/train.py`` does, saved with
``model.serialize()``; outputs from its ``forward(wav, enrollment)``. Each item is run on its own, its
enrollment cropped to its length (the references' batch results depend on padding).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

SAMPLE_RATE = 8000
MIXTURE_SAMPLES = 2005  # (2005 - 16) % 8 = 5: not frame-aligned
ENROLL_LENGTHS = (1603, 2000, 1211)
SPK_EMB_DIM = 12


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Move every parameter and norm statistic away from its initial value, so a wrong mapping shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * (0.2 if p.numel() < 600 else 0.05))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def make_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(17)
    t = torch.arange(MIXTURE_SAMPLES) / SAMPLE_RATE
    mixture = 0.1 * torch.randn(3, MIXTURE_SAMPLES, generator=g) + 0.2 * torch.sin(2 * torch.pi * 220 * t)
    enrollment = torch.zeros(3, max(ENROLL_LENGTHS))
    for i, n in enumerate(ENROLL_LENGTHS):
        enrollment[i, :n] = 0.1 * torch.randn(n, generator=g)
    return {
        "mixture": mixture,
        "mixture_lengths": torch.full((3,), MIXTURE_SAMPLES, dtype=torch.long),
        "enrollment": enrollment,
        "enrollment_lengths": torch.tensor(ENROLL_LENGTHS),
        "embedding": torch.randn(3, SPK_EMB_DIM, generator=g),
    }


# -- ESPnet -------------------------------------------------------------------------------------------------

ESPNET_BASE = {
    "sample_rate": SAMPLE_RATE,
    "optim": "adam",
    "optim_conf": {"lr": 0.001, "eps": 1.0e-08, "weight_decay": 0},
    "init": None,
    "model_conf": {"num_spk": 1, "share_encoder": True},
    "encoder": "conv",
    "encoder_conf": {"channel": 16, "kernel_size": 16, "stride": 8},
    "decoder": "conv",
    "decoder_conf": {"channel": 16, "kernel_size": 16, "stride": 8},
    "extractor": "td_speakerbeam",
    "extractor_conf": {
        "layer": 3, "stack": 2, "bottleneck_dim": 8, "hidden_dim": 16, "skip_dim": 8, "kernel": 3,
        "causal": False, "norm_type": "gLN", "pre_nonlinear": "prelu", "nonlinear": "relu",
        "i_adapt_layer": 4, "adapt_layer_type": "mul", "adapt_enroll_dim": 8, "use_spk_emb": False,
        "spk_emb_dim": 256,
    },
    "criterions": [{"name": "snr", "conf": {"eps": 1.0e-07}, "wrapper": "fixed_order", "wrapper_conf": {"weight": 1.0}}],
}
ESPNET_VARIANTS = {
    "causal-cln": {"extractor_conf": {"causal": True, "norm_type": "cLN", "pre_nonlinear": "tanh",
                                      "nonlinear": "sigmoid", "i_adapt_layer": 2}},
    "bn": {"extractor_conf": {"norm_type": "BN", "i_adapt_layer": 0}},
    "spk-emb": {"model_conf": {"share_encoder": False},
                "extractor_conf": {"use_spk_emb": True, "spk_emb_dim": SPK_EMB_DIM, "i_adapt_layer": 5}},
}


def merged(base: dict, change: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def espnet_model(config: dict) -> torch.nn.Module:
    """The model as ``espnet2.tasks.enh_tse.TargetSpeakerExtractionTask.build_model`` composes it (no losses)."""
    from espnet2.enh.decoder.conv_decoder import ConvDecoder
    from espnet2.enh.encoder.conv_encoder import ConvEncoder
    from espnet2.enh.espnet_model_tse import ESPnetExtractionModel
    from espnet2.enh.extractor.td_speakerbeam_extractor import TDSpeakerBeamExtractor

    assert (config["encoder"], config["decoder"], config["extractor"]) == ("conv", "conv", "td_speakerbeam")
    encoder = ConvEncoder(**config["encoder_conf"])
    extractor = TDSpeakerBeamExtractor(encoder.output_dim, **config["extractor_conf"])
    decoder = ConvDecoder(**config["decoder_conf"])
    return ESPnetExtractionModel(encoder=encoder, extractor=extractor, decoder=decoder, loss_wrappers=[],
                                 **config["model_conf"])


def espnet_outputs(model: torch.nn.Module, inputs: dict, use_spk_emb: bool) -> torch.Tensor:
    rows = []
    with torch.no_grad():
        for b in range(inputs["mixture"].shape[0]):
            mix, mix_len = inputs["mixture"][b : b + 1], inputs["mixture_lengths"][b : b + 1]
            if use_spk_emb:
                aux, aux_len = inputs["embedding"][b : b + 1], torch.tensor([1])
            else:
                n = int(inputs["enrollment_lengths"][b])
                aux, aux_len = inputs["enrollment"][b : b + 1, :n], torch.tensor([n])
            speech_pre, *_ = model.forward_enhance(mix, mix_len, [aux], [aux_len])
            rows.append(speech_pre[0][0])
    return torch.stack(rows)


def write_espnet(root: Path, inputs: dict) -> None:
    import espnet

    folder = root / "espnet-td-speakerbeam"
    for name, change in [("", {}), *ESPNET_VARIANTS.items()]:
        config = merged(ESPNET_BASE, change)
        torch.manual_seed(0)
        model = espnet_model(config)
        perturb(model, 1)
        model.eval()
        out = espnet_outputs(model, inputs, config["extractor_conf"]["use_spk_emb"])
        where = folder / "variants" / name if name else folder
        where.mkdir(parents=True, exist_ok=True)
        (where / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        torch.save(model.state_dict(), where / "valid.loss.best.pth")
        save_file({"estimate": out.contiguous()}, str(where / "outputs.safetensors"))
        print(f"espnet {name or 'main'}: {sum(p.numel() for p in model.parameters())} params, "
              f"|out| max {out.abs().max():.3f}, espnet {espnet.__version__}")
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(folder / "inputs.safetensors"))


# -- BUT ----------------------------------------------------------------------------------------------------

BUT_BASE = {
    "data": {"n_src": 2, "sample_rate": SAMPLE_RATE, "segment": 3, "segment_aux": 3, "task": "sep_noisy",
             "train_dir": "data/wav8k/min/train-100", "valid_dir": "data/wav8k/min/dev"},
    "enroll": {"adapt_enroll_dim": 8, "adapt_layer_type": "mul", "i_adapt_layer": 4},
    "filterbank": {"kernel_size": 16, "n_filters": 16, "stride": 8},
    "main_args": {"exp_dir": "exp/tiny", "help": None},
    "masknet": {"bn_chan": 8, "hid_chan": 16, "mask_act": "relu", "n_blocks": 3, "n_repeats": 2, "n_src": 2,
                "skip_chan": 8},
    "optim": {"lr": 0.001, "optimizer": "adam", "weight_decay": 0.0},
    "positional arguments": {},
    "training": {"batch_size": 6, "early_stop": True, "epochs": 200, "half_lr": True, "num_workers": 4,
                 "reduce_patience": 20, "stop_patience": 120},
}
BUT_VARIANTS = {
    "causal-cln": {"masknet": {"causal": True, "norm_type": "cLN", "mask_act": "sigmoid",
                               "encoder_activation": "relu"},
                   "enroll": {"i_adapt_layer": 2}},
}


def but_model(conf: dict) -> torch.nn.Module:
    """``TimeDomainSpeakerBeam`` as BUT's ``egs/libri2mix/train.py`` builds it."""
    from models.td_speakerbeam import TimeDomainSpeakerBeam

    conf = copy.deepcopy(conf)
    conf["masknet"].update({"n_src": conf["data"]["n_src"]})
    return TimeDomainSpeakerBeam(**conf["filterbank"], **conf["masknet"], sample_rate=conf["data"]["sample_rate"],
                                 **conf["enroll"])


def but_outputs(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    rows = []
    with torch.no_grad():
        for b in range(inputs["mixture"].shape[0]):
            n = int(inputs["enrollment_lengths"][b])
            rows.append(model(inputs["mixture"][b : b + 1], inputs["enrollment"][b : b + 1, :n])[0, 0])
    return torch.stack(rows)


def write_but(root: Path, inputs: dict) -> None:
    import asteroid

    folder = root / "but-td-speakerbeam"
    for name, change in [("", {}), *BUT_VARIANTS.items()]:
        conf = merged(BUT_BASE, change)
        torch.manual_seed(0)
        model = but_model(conf)
        perturb(model, 2)
        model.eval()
        out = but_outputs(model, inputs)
        where = folder / "variants" / name if name else folder
        where.mkdir(parents=True, exist_ok=True)
        (where / "conf.yml").write_text(yaml.safe_dump(conf))
        package = model.serialize()
        versions = package["infos"]["software_versions"]
        assert type(versions["torch_version"]).__name__ == "TorchVersion"  # weights_only=True refuses this str subclass
        versions["torch_version"] = str(versions["torch_version"])
        torch.save(package, where / "best_model.pth")
        torch.load(where / "best_model.pth", weights_only=True)  # plain types only
        save_file({"estimate": out.contiguous()}, str(where / "outputs.safetensors"))
        print(f"but {name or 'main'}: {sum(p.numel() for p in model.parameters())} params, "
              f"|out| max {out.abs().max():.3f}, asteroid {asteroid.__version__}, package keys {sorted(package)}")
    save_file({k: v.contiguous() for k, v in inputs.items() if k != "embedding"}, str(folder / "inputs.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    root = Path(sys.argv[1])
    inputs = make_inputs()
    write_espnet(root, inputs)
    write_but(root, inputs)
