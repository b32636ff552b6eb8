"""tsekit.data.corpus: tree / CSV / JSONL sources, the duration cache, bad files, speaker checks and splits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tsekit.data.corpus import CorpusWarning, cache_root, load_corpus
from tsekit.errors import TsekitError


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("TSEKIT_CACHE_DIR", str(folder))
    return folder


def _wav(path: Path, seconds: float, sr: int = 8000, fmt: str | None = None) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(int(seconds * sr), dtype="float32"), sr, format=fmt)
    return path


def _tree(root: Path, speakers: int = 4, per_speaker: int = 2) -> Path:
    for s in range(speakers):
        for i in range(per_speaker):
            _wav(root / f"spk{s}" / "ch1" / f"spk{s}-ch1-{i}.flac", 0.25 * (i + 1))
    return root


def _count_info(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import soundfile

    calls: list[str] = []
    real = soundfile.info

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(soundfile, "info", counting)
    return calls


def test_tree_layout_and_describe(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", speakers=3)
    _wav(root / "spk0" / "flat.wav", 0.5, sr=16000)  # speaker/utt without a chapter folder
    _wav(root / "spk1" / "ch1" / "clip.ogg", 0.5, fmt="OGG")
    (root / "spk1" / "ch1" / "spk1-ch1.trans.txt").write_text("not audio, not listed\n")
    (root / ".hidden").mkdir()
    _wav(root / ".hidden" / "x.wav", 0.5)
    _wav(root / "top.wav", 0.5)  # no speaker folder
    corpus = load_corpus(root)
    assert corpus.speakers == ["spk0", "spk1", "spk2"] and len(corpus.utterances) == 8
    assert sorted(u.duration for u in corpus.by_speaker()["spk2"]) == [0.25, 0.5]
    info = corpus.describe()
    assert info["speakers"] == 3 and info["utterances"] == 8 and info["rates"] == {8000: 7, 16000: 1}
    assert info["hours"] == pytest.approx((0.25 + 0.5) * 3 / 3600 + 1.0 / 3600, abs=1e-4)
    assert info["utterances_per_speaker"] == {"min": 2, "median": 3, "max": 3} and info["skipped"] == 0


def test_csv_and_jsonl_manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "data" / "tree", speakers=2, per_speaker=1)
    a, b = root / "spk0" / "ch1" / "spk0-ch1-0.flac", root / "spk1" / "ch1" / "spk1-ch1-0.flac"
    rel = [p.relative_to(tmp_path / "data").as_posix() for p in (a, b)]
    csv_file = tmp_path / "data" / "list.csv"
    csv_file.write_text(f"path,speaker,duration_s\n{rel[0]},A,\n{rel[1]},B,7.5\n")
    jsonl = tmp_path / "data" / "list.jsonl"
    jsonl.write_text(json.dumps({"path": rel[1], "speaker": 2, "duration": 3.0, "sample_rate": 8000}) + "\n\n"
                     + json.dumps({"path": rel[0], "speaker": "A"}) + "\n")
    listed = load_corpus(csv_file)
    assert [(u.path, u.speaker, u.duration, u.sample_rate) for u in listed.utterances] == [
        (a, "A", 0.25, 8000), (b, "B", 7.5, 8000)]  # manifest durations are trusted; rates come from the file
    assert load_corpus(csv_file, trust_manifest_durations=False).utterances[1].duration == 0.25

    calls = _count_info(monkeypatch)
    lines = load_corpus(jsonl)
    assert [(u.speaker, u.duration) for u in lines.utterances] == [("2", 3.0), ("A", 0.25)]
    assert calls == [str(a)]  # a row with duration + sample_rate opens nothing (one cache per corpus path)

    for text, expected in (
        ("path,who\nx.wav,a\n", "missing column(s) speaker"),
        ("path,speaker,duration\nx.wav,a,-1\n", "list.csv:2: duration must be a positive number"),
        ("path,speaker\n", "no rows"),
    ):
        csv_file.write_text(text)
        with pytest.raises(TsekitError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            load_corpus(csv_file)
    jsonl.write_text('{"path": "x.wav", "speaker": "a"}\n[1, 2]\n')
    with pytest.raises(TsekitError, match=r"list\.jsonl:2: not a JSON object"):
        load_corpus(jsonl)


def test_cache_hits_and_invalidation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    root = _tree(tmp_path / "tree", speakers=2)
    calls = _count_info(monkeypatch)
    first = load_corpus(root)
    assert len(calls) == 4
    [cache_file] = (cache_dir / "durations").glob("*.json")
    assert cache_root() == cache_dir

    calls.clear()
    assert load_corpus(root) == first and calls == []  # unchanged files: no soundfile.info at all

    changed = _wav(root / "spk1" / "ch1" / "spk1-ch1-0.flac", 1.0)
    again = load_corpus(root)
    assert calls == [str(changed)]
    assert {u.path: u.duration for u in again.utterances}[changed] == 1.0

    calls.clear()
    cache_file.write_text("{not json")  # corrupt: ignored and rebuilt
    assert load_corpus(root) == again and len(calls) == 4
    assert json.loads(cache_file.read_text())["version"] == 1

    calls.clear()
    other = tmp_path / "elsewhere"
    load_corpus(root, cache_dir=other)
    assert len(calls) == 4 and len(list((other / "durations").glob("*.json"))) == 1
    calls.clear()
    load_corpus(root, cache=False)
    assert len(calls) == 4


@pytest.mark.parametrize("kind", ["corrupt", "empty-audio", "empty-file", "missing"])
def test_bad_files_fail_or_skip(tmp_path: Path, kind: str) -> None:
    root = _tree(tmp_path / "tree", speakers=3)
    if kind == "missing":
        rel = "tree/spk0/ch1/spk0-ch1-0.flac"
        source = tmp_path / "list.csv"
        source.write_text(f"path,speaker\n{rel},spk0\ntree/spk2/gone.wav,spk2\ntree/spk2/gone2.wav,spk2\n")
        bad = [root / "spk2" / "gone.wav", root / "spk2" / "gone2.wav"]
    else:
        source = root
        bad = [root / "spk1" / "ch1" / "bad.wav", root / "spk2" / "bad.flac"]
        for path in bad:
            if kind == "corrupt":
                path.write_bytes(b"RIFF this is not audio")
            elif kind == "empty-audio":
                _wav(path, 0.0)
            else:
                path.write_bytes(b"")
    with pytest.raises(TsekitError) as err:
        load_corpus(source)
    message = str(err.value)
    assert "\n" not in message and "unreadable audio file" in message and str(min(bad)) in message
    assert "and 1 more" in message

    with pytest.warns(CorpusWarning) as caught:
        corpus = load_corpus(source, on_error="skip")
    assert sorted(str(p) for p, _ in corpus.skipped) == sorted(str(p) for p in bad)
    assert all(any(str(p) in str(w.message) for w in caught) for p in bad)
    assert corpus.describe()["skipped"] == 2 and not any(u.path in bad for u in corpus.utterances)

    logged: list[str] = []
    load_corpus(source, on_error="skip", log=logged.append)
    assert len(logged) == 2 and all(str(p) in "".join(logged) for p in bad)


def test_missing_or_empty_sources(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TsekitError, match="no speaker/"):
        load_corpus(tmp_path / "empty")
    with pytest.raises(TsekitError, match="no such corpus folder or manifest"):
        load_corpus(tmp_path / "nothing.csv")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "spk").mkdir()
    (tmp_path / "only" / "spk" / "a.wav").write_bytes(b"junk")
    with pytest.raises(TsekitError, match="no readable utterances"):
        load_corpus(tmp_path / "only", on_error="skip", log=lambda _: None)
    with pytest.raises(TsekitError, match="on_error"):
        load_corpus(tmp_path / "only", on_error="ignore")  # type: ignore[arg-type]


def test_require_speakers(tmp_path: Path) -> None:
    one = load_corpus(_tree(tmp_path / "one", speakers=1))
    with pytest.raises(TsekitError, match=r"1 speaker; a speaker-disjoint split needs at least 2"):
        one.split(fraction=0.5)
    with pytest.raises(TsekitError, match=r"one: 1 speaker; training needs at least 2$"):
        one.require_speakers(2, "training")
    assert one.require_speakers(1) is one


def test_split_is_deterministic_and_speaker_disjoint(tmp_path: Path) -> None:
    corpus = load_corpus(_tree(tmp_path / "tree", speakers=10, per_speaker=1))
    rest, held = corpus.split(3, seed=7)
    assert len(held.speakers) == 3 and set(rest.speakers).isdisjoint(held.speakers)
    assert sorted(rest.speakers + held.speakers) == corpus.speakers
    assert corpus.split(3, seed=7) == (rest, held)
    assert any(corpus.split(3, seed=s)[1].speakers != held.speakers for s in range(1, 6))

    train, val = corpus.split(fraction=0.2, seed=7)
    assert len(val.speakers) == 2 and set(train.speakers).isdisjoint(val.speakers)
    assert corpus.split(fraction=0.2, seed=7) == (train, val)
    assert len(corpus.split(fraction=0.01)[1].speakers) == 1 and len(corpus.split(fraction=0.99)[0].speakers) == 1
    for bad in ({"fraction": 1.0}, {"fraction": 0.0}, {}, {"n_held_out": 2, "fraction": 0.5}, {"n_held_out": 11}):
        with pytest.raises(TsekitError):
            corpus.split(**bad)


def test_cli_corpus_describe(tsekit_cli, tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", speakers=2)
    (root / "spk0" / "ch1" / "bad.wav").write_bytes(b"junk")
    failed = tsekit_cli(["corpus", "describe", str(root)])
    assert failed.exit_code == 1 and "bad.wav" in failed.stderr and "\n" not in failed.stderr.strip()
    result = tsekit_cli(["corpus", "describe", str(root), "--skip-bad", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["speakers"] == 2 and "skipped" in result.stderr and "bad.wav" in result.stderr
    assert os.fspath(root) in tsekit_cli(["corpus", "describe", str(root), "--skip-bad"]).stdout
