"""tsekit.data.librimix: LibriMix metadata + enrollment maps (SpeakerBeam and BUT formats) → evaluation lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tsekit.data.evallist import read_eval_list
from tsekit.data.librimix import import_librimix
from tsekit.errors import TsekitError

MIXTURES = ("1089-134686-0000_121-121726-0000", "1284-1180-0001_237-126133-0002", "2094-142345-0003_61-70968-0004")
SPLIT = Path("Libri2Mix/wav8k/min/test")


def _wav(path: Path, n: int = 400) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(n, dtype="float32"), 8000)


@pytest.fixture
def librimix(tmp_path: Path) -> Path:
    """tmp/LibriMix/Libri2Mix/wav8k/min/{test/{mix_clean,s1,s2},metadata} and tmp/LibriSpeech/test-clean."""
    root = tmp_path / "LibriMix"
    for mid in MIXTURES:
        for folder in ("mix_clean", "s1", "s2"):
            _wav(root / SPLIT / folder / f"{mid}.wav")
    _wav(tmp_path / "LibriSpeech" / "test-clean" / "121" / "121726" / "121-121726-0007.flac")
    return root


def _metadata(root: Path, absolute: bool, header: str = "mixture_ID,mixture_path,source_1_path,source_2_path,length") -> Path:
    base = f"{root}/" if absolute else ""
    lines = [header]
    for mid in MIXTURES:
        paths = [f"{base}{SPLIT.as_posix()}/{folder}/{mid}.wav" for folder in ("mix_clean", "s1", "s2")]
        lines.append(",".join([mid, *paths, "400"]))
    path = root / "Libri2Mix/wav8k/min/metadata/mixture_test_mix_clean.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _speakerbeam_map(path: Path, skip: str | None = None, enroll: str | None = None) -> Path:
    m1, m2, m3 = MIXTURES
    lines = [
        f"{m1} 1089-134686-0000 s2/{m3}",  # source of another mixture
        f"{m1} 121-121726-0000 {enroll or '121-121726-0007'}",  # LibriSpeech utterance id
        f"{m2}\ts2\t{SPLIT.as_posix()}/s1/{m1}.wav",  # source index; path relative to the LibriMix root
        f"{m3}  2094-142345-0003  s1/{m2}",
    ]
    path.write_text("\n".join(line for line in lines if skip is None or not line.startswith(skip)) + "\n")
    return path


def test_whitespace_map_with_absolute_metadata(librimix: Path, tmp_path: Path) -> None:
    out = import_librimix(
        _metadata(librimix, absolute=True), _speakerbeam_map(tmp_path / "map_mixture2enrollment"),
        tmp_path / "mixtures.csv", librispeech_root=tmp_path / "LibriSpeech",
    )
    m1, m2, m3 = MIXTURES
    lines = out.read_text().splitlines()
    assert lines[0] == ("mixture_id,mixture_path,enrollment_path,target_path,"
                        "target_speaker,target_source,target_utterance,librimix_id")
    split = f"LibriMix/{SPLIT.as_posix()}"
    assert lines[1:] == [
        f"{m1}_s1,{split}/mix_clean/{m1}.wav,{split}/s2/{m3}.wav,{split}/s1/{m1}.wav,1089,s1,1089-134686-0000,{m1}",
        (
            f"{m1}_s2,{split}/mix_clean/{m1}.wav,LibriSpeech/test-clean/121/121726/121-121726-0007.flac,"
            f"{split}/s2/{m1}.wav,121,s2,121-121726-0000,{m1}"
        ),
        f"{m2}_s2,{split}/mix_clean/{m2}.wav,{split}/s1/{m1}.wav,{split}/s2/{m2}.wav,237,s2,237-126133-0002,{m2}",
        f"{m3}_s1,{split}/mix_clean/{m3}.wav,{split}/s1/{m2}.wav,{split}/s1/{m3}.wav,2094,s1,2094-142345-0003,{m3}",
    ]
    items = read_eval_list(out)
    assert [i.mixture_id for i in items] == [f"{m1}_s1", f"{m1}_s2", f"{m2}_s2", f"{m3}_s1"]
    assert items[1].target == librimix / SPLIT / "s2" / f"{m1}.wav" and items[1].extras["target_speaker"] == "121"
    assert items[3].extras["librimix_id"] == m3


def test_but_csv_map_with_relative_metadata_and_foreign_paths(librimix: Path, tmp_path: Path) -> None:
    m1, m2, m3 = MIXTURES
    far = f"/mnt/matylda/Corpora/LibriMix/{SPLIT.as_posix()}"  # written on another machine
    enrollment = tmp_path / "mixture2enrollment.csv"
    enrollment.write_text(
        "mixture_id,utterance_id,enr_path1,length1\n"
        f"{m1},1089-134686-0000,{far}/s1/{m2}.wav,400\n"
        f"{m2},1284-1180-0001,{far}/s2/{m3}.wav,400\n"
        f"{m2},237-126133-0002,{far}/s1/{m3}.wav,400\n"
        f"{m3},61-70968-0004,{far}/s2/{m1}.wav,400\n"
    )
    out = librimix / "lists" / "mixtures.csv"
    import_librimix(_metadata(librimix, absolute=False), enrollment, out, librimix_root=librimix)
    items = read_eval_list(out)
    assert [(i.mixture_id, i.extras["target_source"]) for i in items] == [
        (f"{m1}_s1", "s1"), (f"{m2}_s1", "s1"), (f"{m2}_s2", "s2"), (f"{m3}_s2", "s2")]
    assert items[1].enrollment == librimix / SPLIT / "s2" / f"{m3}.wav"
    # without --librimix-root, relative metadata paths are found above the metadata file
    import_librimix(_metadata(librimix, absolute=False), enrollment, out)
    assert read_eval_list(out) == items


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-column", "mixture_test_mix_clean.csv: missing column(s) source_1_path"),
        ("unmapped", f"map: no enrollment for mixture '{MIXTURES[1]}' (/"),
        ("no-enrollment", "map:2: enrollment '121-121726-0042' does not exist under /"),
        ("no-librispeech", "map:2: enrollment '121-121726-0007' looks like an utterance id; give --librispeech-root"),
        ("bad-target", "map:1: target '999-1-1' matches none of mixture"),
        ("missing-audio", f"mixture_test_mix_clean.csv:2: mixture_path {MIXTURES[0]}"),
    ],
)
def test_errors_are_one_line(librimix: Path, tmp_path: Path, case: str, expected: str) -> None:
    header = "mixture_ID,mixture_path,source_2_path,length" if case == "missing-column" else None
    metadata = _metadata(librimix, absolute=False, **({"header": header} if header else {}))
    if case == "missing-audio":
        metadata.write_text(metadata.read_text().replace(f"{SPLIT.as_posix()}/mix_clean/", ""))
    map_file = _speakerbeam_map(
        tmp_path / "map",
        skip=MIXTURES[1] if case == "unmapped" else None,
        enroll="121-121726-0042" if case == "no-enrollment" else None,
    )
    if case == "bad-target":
        map_file.write_text(map_file.read_text().replace(" 1089-134686-0000 ", " 999-1-1 "))
    speech = None if case == "no-librispeech" else tmp_path / "LibriSpeech"
    with pytest.raises(TsekitError) as err:
        import_librimix(metadata, map_file, tmp_path / "out.csv", librispeech_root=speech)
    message = str(err.value)
    assert "\n" not in message and expected in message, message
    assert not (tmp_path / "out.csv").exists()


def test_cli_import_librimix(tsekit_cli, librimix: Path, tmp_path: Path) -> None:
    metadata = _metadata(librimix, absolute=True)
    map_file = _speakerbeam_map(tmp_path / "map")
    out = tmp_path / "mixtures.csv"
    args = ["import-librimix", str(metadata), "--enrollment", str(map_file), "--out", str(out)]
    result = tsekit_cli([*args, "--librispeech-root", str(tmp_path / "LibriSpeech"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"out": str(out), "rows": 4, "mixtures": 3}
    assert len(read_eval_list(out)) == 4

    failed = tsekit_cli([*args, "--librimix-root", str(tmp_path / "nowhere")])
    assert failed.exit_code == 1 and failed.stderr.strip().startswith("tsekit: error: --librimix-root")
    assert "\n" not in failed.stderr.strip()
