"""Bad input at the command line: every problem is one line on stderr, never a traceback, and a non-zero exit;
nothing is written outside the folder the user chose; one bad row of a list does not lose the others."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

FAST_METRICS = ["--metrics", "si-sdr,si-sdri"]


def one_error_line(result: Any) -> str:
    """The run failed with one ``tsekit: error:`` line, the last on stderr (a progress bar may precede it),
    and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("tsekit: error: ")] == lines[-1:], result.stderr
    return lines[-1]


def metrics_ids(folder: Path) -> list[str]:
    with open(folder / "metrics.csv", newline="", encoding="utf-8") as fh:
        return [row["mixture_id"] for row in csv.DictReader(fh)]


# -- lists: path traversal, bad rows, resume -------------------------------------------------------------


def test_extract_list_never_writes_outside_out_dir(tsekit_cli, tiny_model: Path, make_eval_list, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "x"
    listing = make_eval_list(["ok", "../../escaped", str(outside)])
    out_dir = tmp_path / "estimates"
    result = tsekit_cli(["extract", "--model", str(tiny_model), "--list", str(listing), "--out-dir", str(out_dir)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["ok.wav"]
    assert not list(tmp_path.rglob("escaped.wav")) and not outside.with_suffix(".wav").exists()
    *skipped, last = result.stderr.strip().splitlines()
    assert len(skipped) == 2 and all(line.startswith("tsekit: skipped: ") for line in skipped)
    assert all("is not a plain file name: it would write outside" in line for line in skipped)
    assert last == "tsekit: error: 2 of 3 rows skipped (listed above); the other 1 are done"


def test_extract_list_continues_past_a_bad_row(tsekit_cli, tiny_model: Path, make_eval_list, tmp_path: Path) -> None:
    listing = make_eval_list(["a", "b", "c"], silent=("b",))
    out_dir = tmp_path / "estimates"
    args = ["extract", "--model", str(tiny_model), "--list", str(listing), "--out-dir", str(out_dir)]
    result = tsekit_cli(args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.wav", "c.wav"]
    assert f"tsekit: skipped: {listing}:3 (b): " in result.stderr and "silent audio" in result.stderr
    stop = tsekit_cli([*args, "--on-error", "stop", "--resume"])
    assert "b" in one_error_line(stop) and "silent audio" in stop.stderr


def test_eval_skips_a_bad_row_and_scores_the_rest(tsekit_cli, tiny_model: Path, make_eval_list, tmp_path: Path) -> None:
    listing = make_eval_list(["m0", "m1", "m2", "m3"], silent=("m1",), missing=("m2",))
    out = tmp_path / "eval"
    result = tsekit_cli(["eval", "--model", str(tiny_model), "--list", str(listing), "--out", str(out), *FAST_METRICS])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert metrics_ids(out) == ["m0", "m3"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 2 and summary["complete"] and summary["si_sdri"] == summary["si_sdri"]
    assert [(s["mixture_id"], s["where"]) for s in summary["skipped"]] == [("m1", f"{listing}:3"), ("m2", f"{listing}:4")]
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "tsekit: error: 2 of 4 rows skipped (listed above); the other 2 are done"
    assert any(f"(m2): {listing.parent / 'mix2.wav'}: no such file" in line for line in lines[:-1])


def test_eval_stops_on_request_keeps_what_was_scored_and_resumes(tsekit_cli, tiny_model: Path, make_eval_list,
                                                                 tmp_path: Path) -> None:
    listing = make_eval_list(["m0", "m1", "m2"], silent=("m1",))
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_model), "--list", str(listing), "--out", str(out), *FAST_METRICS]
    stopped = tsekit_cli([*args, "--on-error", "stop"])
    assert f"{listing}:3 (m1): " in one_error_line(stopped)
    assert metrics_ids(out) == ["m0"]
    assert json.loads((out / "summary.json").read_text())["complete"] is False
    first_row = (out / "metrics.csv").read_text().splitlines()[1]
    (listing.parent / "ref1.wav").write_bytes((listing.parent / "ref0.wav").read_bytes())  # the bad row fixed
    (listing.parent / "mix0.wav").unlink()  # a resumed run must not score m0 again
    resumed = tsekit_cli([*args, "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert metrics_ids(out) == ["m0", "m1", "m2"] and (out / "metrics.csv").read_text().splitlines()[1] == first_row
    assert json.loads(resumed.stdout)["n"] == 3 and json.loads((out / "summary.json").read_text())["complete"]


# -- outputs are checked before any work ----------------------------------------------------------------


@pytest.mark.parametrize("case", ["under-a-file", "a-folder", "unwritable"])
def test_extract_refuses_an_unusable_out_before_working(case: str, tsekit_cli, tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    out = {"under-a-file": tmp_path / "file" / "o.wav", "a-folder": tmp_path, "unwritable": Path("/sys/tsekit/o.wav")}[case]
    missing = tmp_path / "no-such-mixture.wav"  # checked later: the output problem must come first
    line = one_error_line(tsekit_cli(["extract", "--model", str(tiny_model), "--mix", str(missing), "--ref", str(missing),
                                      "--out", str(out)]))
    reason = {"under-a-file": "is a file, not a folder", "a-folder": "is a folder", "unwritable": "cannot write in"}[case]
    assert line.startswith(f"tsekit: error: --out {out}: ") and reason in line


def test_list_outputs_that_are_files_are_refused(tsekit_cli, tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    missing = str(tmp_path / "no-such-list.csv")
    extract = tsekit_cli(["extract", "--model", str(tiny_model), "--list", missing, "--out-dir", str(tmp_path / "file")])
    assert one_error_line(extract) == f"tsekit: error: --out-dir {tmp_path / 'file'}: is a file, not a folder"
    evaluate = tsekit_cli(["eval", "--model", str(tiny_model), "--list", missing, "--out", str(tmp_path / "file")])
    assert one_error_line(evaluate) == f"tsekit: error: --out {tmp_path / 'file'}: is a file, not a folder"


# -- bad models, configs and options --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["model"].pop("backbone"), "model.backbone is missing"),
        (lambda m: m["model"].update(adapt_layers=5), "model.adapt_layers must be a list, got 5"),
        (lambda m: m["model"].update(encoder_config="x"), "model.encoder_config must be a dict, got 'x'"),
        (lambda m: m.update(model=[]), "'model' must be a mapping of what to rebuild"),
    ],
)
def test_damaged_model_json_is_one_line(edit: Any, message: str, tsekit_cli, tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    meta = json.loads((tiny_model / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    (folder / "model.safetensors").write_bytes((tiny_model / "model.safetensors").read_bytes())
    line = one_error_line(tsekit_cli(["extract", "--model", str(folder), "--mix", "m.wav", "--ref", "r.wav",
                                      "--out", str(tmp_path / "o.wav")]))
    assert line == f"tsekit: error: {folder / 'model.json'}: {message}"


def test_chunk_seconds_nan_is_one_line(tsekit_cli, tiny_model: Path, tmp_path: Path) -> None:
    line = one_error_line(tsekit_cli(["extract", "--model", str(tiny_model), "--mix", "m.wav", "--ref", "r.wav",
                                      "--out", str(tmp_path / "o.wav"), "--chunk-seconds", "nan"]))
    assert line == "tsekit: error: chunk_seconds must be a finite number of seconds ≥ 0, got nan"


def test_init_from_that_is_not_safetensors_is_one_line(tsekit_cli, tmp_path: Path) -> None:
    weights = tmp_path / "weights.safetensors"
    weights.write_text("not safetensors")
    line = one_error_line(tsekit_cli(["train", "--preset", "tiny", "--out", str(tmp_path / "run"),
                                      f"train.init_from={weights}"]))
    assert line.startswith(f"tsekit: error: {weights}: train.init_from is not readable safetensors (")


# -- exceptions raised in plugin code --------------------------------------------------------------------

BOOM_PLUGIN = """
import tsekit
from dataclasses import dataclass
from tsekit.contracts import EncoderCaps
from tsekit.nn import SpeakerEncoder

@dataclass(frozen=True)
class Cfg:
    dim: int = 16

class Boom(SpeakerEncoder):
    def __init__(self, config):
        super().__init__()
        self.embedding_dim, self.sample_rate = config.dim, 16000

    def forward(self, wav, lengths=None):
        raise RuntimeError("kaput")

@tsekit.hookimpl
def tsekit_register_encoders(register):
    register("boom", Boom, config=Cfg, capabilities=lambda c: EncoderCaps(c.dim, 16000, False, True))
"""


def test_an_exception_in_plugin_code_is_one_line_naming_the_plugin(tsekit_cli, fake_dist, monkeypatch) -> None:
    from tsekit.plugins import load_plugins

    fake_dist("tsekit-boomer", {"boom_mod": BOOM_PLUGIN}, {"boomer": "boom_mod"}, version="2.1")
    plugins = load_plugins(autoload=True)
    args = ["inspect", "--encoder", "boom", "--fusion", "film", "--preset", "tiny", "--seconds", "1"]
    line = one_error_line(tsekit_cli(args, plugins))
    assert line == ("tsekit: error: plugin 'boomer' (tsekit-boomer 2.1): RuntimeError: kaput "
                    "(boom_mod.py:17; --debug shows the traceback)")
    debug = tsekit_cli(["--debug", *args], plugins)
    assert debug.exit_code == 1 and isinstance(debug.exception, RuntimeError)  # raised on: Python prints the traceback
    monkeypatch.setenv("TSEKIT_DEBUG", "1")
    assert isinstance(tsekit_cli(args, plugins).exception, RuntimeError)


def test_an_unexpected_exception_elsewhere_is_one_line_naming_the_command(tsekit_cli, tmp_path: Path,
                                                                          monkeypatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("something unforeseen")

    monkeypatch.setattr("tsekit.inference.load_model", broken)
    line = one_error_line(tsekit_cli(["extract", "--mix", "m.wav", "--ref", "r.wav", "--out", str(tmp_path / "o.wav")]))
    assert line.startswith("tsekit: error: extract: ValueError: something unforeseen (test_bad_input.py:")
