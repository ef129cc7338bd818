"""Dataset builders on small subsets of the real data, and the bundled sample."""
from __future__ import annotations

import gzip
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from polymodal.data import read_manifest
from polymodal.data.datasets import (DATASETS, build_dataset, list_datasets, sample_path)
from polymodal.data.datasets._common import DIGIT_WORDS
from polymodal.data.datasets.av_digits import add_white_noise, remove_pca_energy
from polymodal.data.datasets.mnist import IMAGE_MAGIC, read_idx
from polymodal.data.datasets.openclipart import caption_rows, fixed_split, load_captions
from polymodal.core.errors import DataError, PolymodalError, UsageError

COLLECTION_TITLES = ["gramastar", "lemon svg theme", "card", "etiquette icons",
                     "aiga_symbol_signs", "various cliparts", "svg road signs",
                     "part of the flat icon collection (wed aug 25 23:29:46 2004)"]


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]


def _read_ok(manifest: Path):
    m = read_manifest(manifest)
    assert not m.problems, m.problems[:3]
    for r in m.records:
        for p in (r.image, r.audio):
            assert p is None or p.is_file(), p
    return m


@pytest.fixture(scope="module")
def fsdd_subset(shared_data, tmp_path_factory) -> Path:
    """A temp FSDD folder: 2 recordings x digits 0-2 x all 6 speakers (36 files)."""
    src = tmp_path_factory.mktemp("fsdd_src")
    (src / "recordings").mkdir()
    for p in sorted((shared_data / "fsdd" / "recordings").glob("*.wav")):
        d, _, i = p.stem.split("_")
        if int(d) <= 2 and int(i) < 2:
            shutil.copy(p, src / "recordings" / p.name)
    shutil.copy(shared_data / "fsdd" / "speakers.json", src / "speakers.json")
    return src


def test_registry_and_option_errors(tmp_path):
    assert {n for n, _ in list_datasets()} == {"fsdd", "mnist", "av-digits", "av-digits-hard",
                                              "av-digits-video", "openclipart",
                                              "openclipart-spoken", "sort-of-clevr"}
    assert all(DATASETS[n].description for n in DATASETS)
    with pytest.raises(UsageError, match="unknown dataset 'nope'; valid: fsdd"):
        build_dataset("nope", tmp_path, tmp_path / "o")
    with pytest.raises(UsageError, match="unknown option 'hardness'.*hard"):
        build_dataset("av-digits", tmp_path, tmp_path / "o", hardness=True)


@pytest.mark.parametrize("name", ["fsdd", "mnist", "av-digits", "openclipart"])
def test_missing_or_wrong_source_is_a_clear_error(tmp_path, name):
    with pytest.raises(PolymodalError, match="not found"):
        build_dataset(name, tmp_path / "missing", tmp_path / "o", progress=False)
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(PolymodalError, match=f"does not look like the '{name}' dataset: expected"):
        build_dataset(name, tmp_path, tmp_path / "o", progress=False)


def test_fsdd_split_by_speaker_deterministic(fsdd_subset, tmp_path):
    a = build_dataset("fsdd", fsdd_subset, tmp_path / "a", seed=3, progress=False)
    b = build_dataset("fsdd", fsdd_subset, tmp_path / "b", seed=3, progress=False)
    assert a.read_text() == b.read_text()
    m = _read_ok(a)
    assert len(m) == 36
    for r in m:
        digit = int(r.id.split("_")[0])
        assert r.label == digit and r.text == [DIGIT_WORDS[digit]]
        assert r.extra["speaker"] == r.id.split("_")[1] and r.extra["accent"]
    spk = {s: {r.extra["speaker"] for r in m.split(s)} for s in ("train", "val", "test")}
    assert len(spk["train"]) == 4 and len(spk["val"]) == 1 and len(spk["test"]) == 1
    assert not spk["test"] & (spk["train"] | spk["val"]) and not spk["val"] & spk["train"]
    # audio is referenced in place, relative to the manifest
    assert not Path(_rows(a)[0]["audio"]).is_absolute()
    tests = set()
    for seed in range(6):
        p = build_dataset("fsdd", fsdd_subset, tmp_path / f"s{seed}", seed=seed, progress=False)
        tests |= {r["speaker"] for r in _rows(p) if r["split"] == "test"}
    assert len(tests) >= 2  # the seed really chooses the held-out speaker
    p = build_dataset("fsdd", fsdd_subset, tmp_path / "fixed", test_speakers="theo",
                      progress=False)
    assert {r["speaker"] for r in _rows(p) if r["split"] == "test"} == {"theo"}


def test_fsdd_copy_and_parent_source(fsdd_subset, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(fsdd_subset, root / "fsdd")
    p = build_dataset("fsdd", root, tmp_path / "o", copy=True, limit=10, progress=False)
    m = _read_ok(p)
    assert len(m) == 10 and all(r.audio.parent == p.parent / "audio" for r in m)


def test_mnist_idx_pngs_and_split(shared_data, tmp_path):
    p = build_dataset("mnist", shared_data, tmp_path / "o", seed=1, limit=200, progress=False)
    m = _read_ok(p)
    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz", IMAGE_MAGIC)
    for r in m.records[:20]:
        i = r.extra["mnist_index"]
        arr = np.asarray(Image.open(r.image))
        assert arr.shape == (28, 28) and np.array_equal(arr, images[i])
        assert r.text == [f"a handwritten digit {DIGIT_WORDS[r.label]}"]
    assert Counter(r.split for r in m) == {"train": 160, "val": 20, "test": 20}
    again = build_dataset("mnist", shared_data, tmp_path / "o", seed=1, limit=200,
                          progress=False)
    assert again.read_text() == p.read_text()
    other = build_dataset("mnist", shared_data, tmp_path / "o2", seed=2, limit=200,
                          progress=False)
    assert [r["split"] for r in _rows(other)] != [r["split"] for r in _rows(p)]


def test_mnist_corrupt_idx(tmp_path, shared_data):
    src = tmp_path / "mnist"
    src.mkdir()
    shutil.copy(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz", src)
    (src / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="t10k-images.*not a readable gzip"):
        build_dataset("mnist", src, tmp_path / "o", progress=False)
    with gzip.open(src / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write((2049).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="bad IDX magic number 2049"):
        build_dataset("mnist", src, tmp_path / "o", progress=False)
    with gzip.open(src / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (5, 28, 28))
                 + b"\0" * 100)
    with pytest.raises(DataError, match="truncated or corrupt"):
        build_dataset("mnist", src, tmp_path / "o", progress=False)


def test_av_digits_pairs_same_digit_unseen_test_speakers(shared_data, tmp_path):
    p = build_dataset("av-digits", shared_data, tmp_path / "a", seed=0, limit=300,
                      progress=False)
    m = _read_ok(p)
    assert len(m) == 300 and m.modalities == ["image", "text", "audio"]
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz", 2049)
    for r in m:
        assert int(r.audio.name.split("_")[0]) == r.label == labels[r.extra["mnist_index"]]
        assert r.audio.name.split("_")[1] == r.extra["speaker"]
        assert r.text == [DIGIT_WORDS[r.label]]
    spk = {s: {r.extra["speaker"] for r in m.split(s)} for s in ("train", "val", "test")}
    assert spk["test"] and not spk["test"] & (spk["train"] | spk["val"])
    assert build_dataset("av-digits", shared_data, tmp_path / "b", seed=0, limit=300,
                         progress=False).read_text() == p.read_text()
    other = build_dataset("av-digits", shared_data, tmp_path / "c", seed=1, limit=300,
                          progress=False)
    assert [r["recording"] for r in _rows(other)] != [r["recording"] for r in _rows(p)]


def test_hard_transforms(shared_data):
    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz", IMAGE_MAGIC)[:2000]
    hard, k = remove_pca_energy(images, 0.75)
    assert hard.shape == images.shape and hard.dtype == np.uint8 and 5 < k < 200
    x = images.reshape(len(images), -1) / 255.0
    y = hard.reshape(len(hard), -1) / 255.0
    kept = ((y - y.mean(0)) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert 0.1 < kept < 0.4  # about 25 % of the energy is left (clipping changes it a little)
    wav, _ = sf.read(next((shared_data / "fsdd" / "recordings").glob("3_*.wav")),
                     dtype="float32")
    for snr in (0.0, 10.0):
        noisy = add_white_noise(wav, snr, np.random.default_rng(0))
        measured = 10 * np.log10(np.mean(wav ** 2) / np.mean((noisy - wav) ** 2))
        assert abs(measured - snr) < 1.0


def test_av_digits_hard_writes_noisy_audio_and_rebuild_cleans(shared_data, tmp_path):
    out = tmp_path / "o"
    p = build_dataset("av-digits-hard", shared_data, out, limit=40, progress=False)
    m = _read_ok(p)
    assert all(r.audio.parent == out / "audio" for r in m)
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["hard"] and info["snr_db"] == 0.0 and info["pca_components_dropped"] > 0
    r = m.records[0]
    clean, _ = sf.read(shared_data / "fsdd" / "recordings" / r.extra["recording"])
    noisy, _ = sf.read(r.audio)
    assert len(noisy) == len(clean) and not np.allclose(noisy, clean, atol=1e-3)
    # rebuilding the clean variant over the same folder drops the stale audio/ folder
    p2 = build_dataset("av-digits", shared_data, out, limit=10, hard="false", progress=False)
    assert not (out / "audio").exists() and len(list((out / "images").iterdir())) == 10
    assert len(_read_ok(p2)) == 10
    assert not list(out.glob(".*staging*"))


def test_output_folder_never_wipes_foreign_files(shared_data, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "mine.png").write_bytes(b"x")
    with pytest.raises(PolymodalError, match="not written by"):
        build_dataset("mnist", shared_data, tmp_path, limit=5, progress=False)
    assert (tmp_path / "images" / "mine.png").is_file()


@pytest.fixture(scope="module")
def clipart_rows(shared_data) -> list[dict]:
    return caption_rows(load_captions(shared_data / "openclipart"))


def test_openclipart_captions_are_not_collection_names(clipart_rows):
    titles = Counter(r["title"].lower() for r in clipart_rows)
    bad = set(COLLECTION_TITLES) | {t for t, n in titles.items() if n >= 100}
    mains = [r["text"][0] for r in clipart_rows]
    assert not [c for c in mains if c.lower() in bad]
    star = next(r for r in clipart_rows if r["title"] == "gramastar")
    assert "star" in star["text"][0]
    # the collection-titled drawings get words from their file name
    icon = next(r for r in clipart_rows if r["id"].endswith("lemon-theme/filesystems/folder_video"))
    assert "folder video" in icon["text"][0]
    # author fragments of file names stay out of captions
    assert not [c for c in mains if re.search(r"\bnicu\b|\bbuculei\b|\bganson\b", c.lower())]
    # identical main captions share a caption_group and different ones do not
    group_of: dict[str, int] = {}
    for r in clipart_rows:
        assert group_of.setdefault(r["text"][0].lower(), r["caption_group"]) == r["caption_group"]
    assert len(set(group_of.values())) == len(group_of)
    assert len(group_of) > 0.75 * len(clipart_rows)


def test_openclipart_fixed_test_split(clipart_rows):
    splits = Counter(r["split"] for r in clipart_rows)
    assert splits["test"] >= 1000 and 400 <= splits["val"] <= 700
    assert all(fixed_split(r["id"]) == r["split"] for r in clipart_rows[:500])
    by_name: dict[str, set[str]] = {}
    for r in clipart_rows:  # copies of a drawing filed in two folders share a split
        by_name.setdefault(r["id"].rsplit("/", 1)[-1].lower(), set()).add(r["split"])
    assert all(len(s) == 1 for s in by_name.values())


def test_openclipart_builder_on_subset(shared_data, tmp_path):
    oc = shared_data / "openclipart"
    lines = (oc / "captions.jsonl").read_text(encoding="utf-8").splitlines()
    pick = lines[:40] + [ln for ln in lines if '"gramastar"' in ln][:5] + \
        [ln for ln in lines if '"Lemon SVG theme"' in ln][:5]
    src = tmp_path / "src"
    for ln in pick:
        img = json.loads(ln)["image"]
        (src / img).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(oc / img, src / img)
    (src / "captions.jsonl").write_text("\n".join(pick) + "\n", encoding="utf-8")
    a = build_dataset("openclipart", src, tmp_path / "a", seed=0, progress=False)
    b = build_dataset("openclipart", src, tmp_path / "b", seed=7, progress=False)
    ra, rb = _rows(a), _rows(b)
    assert [r["split"] for r in ra] == [r["split"] for r in rb]  # not seed-dependent
    m = _read_ok(a)
    assert len(m) == 50 and all(r.label == r.extra["category"] for r in m)
    assert not [r for r in m if r.text[0].lower() in COLLECTION_TITLES]
    info = json.loads((tmp_path / "a" / "dataset_info.json").read_text())
    sizes = Counter(r["caption_group"] for r in ra)
    assert info["captions"]["drawings_with_shared_caption"] == sum(
        n for n in sizes.values() if n > 1)
    (src / "captions.jsonl").write_text(pick[0] + "\n{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 2"):
        build_dataset("openclipart", src, tmp_path / "c", progress=False)


def test_bundled_sample():
    root = sample_path("openclipart").parent.parent
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert 0 < total <= 5 * 1024 * 1024
    attribution = (root / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needle in ("CC BY-SA 3.0", "CC BY-SA 4.0", "ublic domain"):
        assert needle in attribution
    oc = _read_ok(sample_path("openclipart"))
    assert len(oc) >= 300 and len(oc.split("test")) >= 100 and len(oc.split("train")) >= 100
    assert len({r.text[0].lower() for r in oc}) == len(oc)  # informative, distinct captions
    assert all(fixed_split(r.id) == r.split for r in oc)
    av = _read_ok(sample_path("av-digits"))
    assert len(av) >= 200
    assert all(int(r.audio.name[0]) == r.label for r in av)
    spk = {s: {r.extra["speaker"] for r in av.split(s)} for s in ("train", "val", "test")}
    assert spk["test"] and not spk["test"] & spk["train"]
    with pytest.raises(UsageError, match="bundled samples"):
        sample_path("nope")
