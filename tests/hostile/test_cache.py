"""Hostile feature cache and encode output (issue 11): the cache verifies what it returns and
re-encodes bad entries, the file-digest shortcut is never fooled, orphans are collected, vectors
are checkpointed, feature folders are written as a unit, and a fit that fails late leaves no
COMPLETE marker.

Encoders here are small real ones (a colour-statistics image encoder that decodes with the
project's loader, a hashed bag-of-words text encoder) so every case runs in well under a second;
texts come from the bundled OpenClipart sample, images are BMPs made in tmp_path (a BMP of a
given size always has the same byte size, so "same size, same mtime, other content" is real).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import polymodal.features.cache.files as files_mod
import polymodal.features.cache.store as store_mod
from polymodal.cli.main import main
from polymodal.core.errors import PolymodalError, UsageError
from polymodal.core.runfolder import RunFolder
from polymodal.data.datasets import sample_path
from polymodal.data.loaders import load_image
from polymodal.features.cache import features as features_mod
from polymodal.features.cache.features import FeatureSet
from polymodal.features.cache.store import FeatureStore, FileHasher, file_digest, vector_checksum
from polymodal.features import encode as encode_mod
from polymodal.features import encode_output
from polymodal.features.encode import encode_manifest
from polymodal.features.encoders.base import encode_items

from encoders_testdata import WordEncoder  # tests/ is on sys.path (tests/conftest.py)

pytestmark = pytest.mark.timeout(60)
N_TEXTS = 40


class ColourEncoder:
    """Mean and std of each RGB channel of the decoded image (6-d)."""

    name, modality, dim, batch_size = "colour", "image", 6, 4

    def __init__(self, fail: bool = False):
        self.encoded = 0
        self.fail = fail

    @property
    def id(self) -> str:
        return "colour|mean-std"

    def prepare(self, item):
        return np.asarray(load_image(item), np.float32) / 255.0

    def encode_prepared(self, batch):
        if self.fail:
            raise RuntimeError("encoder died")
        self.encoded += len(batch)
        return torch.tensor(np.stack([np.concatenate([a.mean((0, 1)), a.std((0, 1))])
                                      for a in batch]), dtype=torch.float32)

    def encode(self, items):
        return encode_items(self, items)


# ---------------------------------------------------------------- helpers
def texts_manifest(tmp: Path, n: int = N_TEXTS) -> Path:
    """n rows of real OpenClipart titles, made unique (one text cell per row), and labels."""
    src = sample_path("openclipart")
    rows = [json.loads(x) for x in src.read_text().splitlines()][:n]
    man = tmp / "texts.jsonl"
    man.write_text("".join(json.dumps({"id": r["id"], "text": f"{r['title']} {i}",
                                       "label": r["label"]}) + "\n"
                           for i, r in enumerate(rows)))
    return man


def bmp(path: Path, colour) -> Path:
    Image.new("RGB", (16, 16), colour).save(path, format="BMP")
    return path


def images_manifest(tmp: Path, names: list[str]) -> Path:
    man = tmp / "images.jsonl"
    man.write_text("".join(json.dumps({"id": f"r{i}", "image": str(tmp / n)}) + "\n"
                           for i, n in enumerate(names)))
    return man


def encode(man: Path, out: Path, cache: Path, **encoders):
    return encode_manifest(man, out, encoders=encoders, cache_dir=cache, progress=False)


def vectors(out: Path, modality: str) -> np.ndarray:
    return np.asarray(FeatureSet.load(out).vectors(modality)[0])


def store_dir(cache: Path, prefix: str) -> Path:
    (d,) = [p for p in cache.iterdir() if p.name.startswith(prefix)]
    return d


def shards(cache: Path, prefix: str = "words") -> list[Path]:
    return sorted(store_dir(cache, prefix).glob("shard-*.f16"))


def db(cache: Path, prefix: str = "words") -> sqlite3.Connection:
    return sqlite3.connect(store_dir(cache, prefix) / "index.sqlite", isolation_level=None)


@pytest.fixture
def clean_texts(tmp_path):
    """A texts manifest encoded once into a fresh cache: (manifest, cache, reference vectors)."""
    man, cache = texts_manifest(tmp_path), tmp_path / "cache"
    res = encode(man, tmp_path / "clean", cache, text=WordEncoder())
    assert res.stats["text"].encoded == N_TEXTS and len(shards(cache)) == 1
    return man, cache, vectors(tmp_path / "clean", "text")


def reencode(man: Path, cache: Path, out: Path, expect: int, ref: np.ndarray):
    """Encode again: exactly ``expect`` entries failed verification and were encoded again, the
    summary says so, and the vectors equal the clean run's."""
    enc = WordEncoder()
    res = encode(man, out, cache, text=enc)
    s = res.stats["text"]
    assert (s.reencoded, enc.encoded, s.cached) == (expect, expect, N_TEXTS - expect)
    assert f"re-encoded {expect} cache entries that failed verification" in res.table()
    np.testing.assert_array_equal(vectors(out, "text"), ref)
    return res


# ---------------------------------------------------------------- verification on read
def test_corrupted_shard_bytes_are_dropped_and_reencoded(clean_texts, tmp_path):
    man, cache, ref = clean_texts
    (shard,) = shards(cache)
    data = bytearray(shard.read_bytes())
    for row in (3, 10):  # one flipped bit in each of two vectors: still finite numbers
        data[row * 32 + 4] ^= 0x01
    shard.write_bytes(bytes(data))
    reencode(man, cache, tmp_path / "again", 2, ref)


def test_truncated_shard_is_reencoded_without_traceback(clean_texts, tmp_path):
    man, cache, ref = clean_texts
    (shard,) = shards(cache)
    with open(shard, "r+b") as fh:
        fh.truncate(25 * 32 + 7)  # 25 whole rows and part of the 26th
    reencode(man, cache, tmp_path / "again", N_TEXTS - 25, ref)


def test_deleted_shard_is_reencoded_without_traceback(clean_texts, tmp_path):
    man, cache, ref = clean_texts
    shards(cache)[0].unlink()
    reencode(man, cache, tmp_path / "again", N_TEXTS, ref)


@pytest.mark.parametrize("damage", ["shift", "swap"])
def test_wrong_index_rows_are_detected(clean_texts, tmp_path, damage):
    """Every index row shifted by one, or two keys pointing at each other's vector (the
    checksum binds the key, so the bytes must be that key's). A key now pointing at a vector
    with identical bytes (two texts with the same bag of words) has its own vector: kept."""
    man, cache, ref = clean_texts
    data = np.fromfile(shards(cache)[0], "<f2").reshape(-1, 16)
    con = db(cache)
    if damage == "swap":
        (k1, r1), (k2, r2) = con.execute(
            "SELECT a.key, a.row FROM vectors a WHERE a.row IN (?, ?)", (0, 1)).fetchall()
        assert not np.array_equal(data[r1], data[r2])
        con.execute("UPDATE vectors SET row=? WHERE key=?", (r2, k1))
        con.execute("UPDATE vectors SET row=? WHERE key=?", (r1, k2))
        expect = 2
    else:
        con.execute("UPDATE vectors SET row = row + 1")
        same = sum(np.array_equal(data[i], data[i + 1]) for i in range(len(data) - 1))
        expect = N_TEXTS - same
        assert expect >= N_TEXTS - 5
    con.close()
    reencode(man, cache, tmp_path / "again", expect, ref)


def test_nan_with_a_valid_checksum_is_never_returned(clean_texts, tmp_path):
    man, cache, ref = clean_texts
    (shard,) = shards(cache)
    con = db(cache)
    key = con.execute("SELECT key FROM vectors WHERE row=4").fetchone()[0]
    data = np.fromfile(shard, "<f2").reshape(-1, 16)
    data[4, 7] = np.nan
    data.tofile(shard)
    # a writer that stored the NaN and its checksum: only the finiteness check can catch it
    con.execute("UPDATE vectors SET checksum=? WHERE key=?", (vector_checksum(key, data[4]), key))
    con.close()
    copy = tmp_path / "copy"
    shutil.copytree(cache, copy)
    st = FeatureStore(copy, WordEncoder().id)
    with pytest.raises(KeyError):
        st.get([key], 16)
    vec, ok = st.fetch([key], 16)  # dropped by the get: now simply missing
    assert not ok[0] and np.isfinite(vec).all() and st.dropped == 1 and not st.lookup([key])
    st.close()
    reencode(man, cache, tmp_path / "again", 1, ref)


# ---------------------------------------------------------------- the file-digest shortcut
@pytest.mark.parametrize("how", ["rewrite", "rename"])
def test_file_swapped_with_same_size_and_mtime_is_rehashed(tmp_path, monkeypatch, how):
    monkeypatch.setattr(files_mod, "RACY_NS", 0)  # trust a remembered digest at once
    a, b = bmp(tmp_path / "a.bmp", (255, 0, 0)), bmp(tmp_path / "b.bmp", (0, 0, 255))
    man, cache = images_manifest(tmp_path, ["a.bmp", "b.bmp"]), tmp_path / "cache"
    encode(man, tmp_path / "f1", cache, image=ColourEncoder())
    v1 = vectors(tmp_path / "f1", "image")
    assert v1[0, 0] == 1.0 and v1[0, 2] == 0.0  # red
    st = os.stat(a)
    if how == "rewrite":
        a.write_bytes(b.read_bytes())
    else:
        tmp = bmp(tmp_path / "new.bmp", (0, 0, 255))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, a)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(a).st_size, os.stat(a).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    encode(man, tmp_path / "f2", cache, image=ColourEncoder())
    v2 = vectors(tmp_path / "f2", "image")
    np.testing.assert_array_equal(v2[0], v2[1])  # a now holds b's bytes: b's (blue) vector


def test_digest_is_reused_only_once_the_file_has_settled(tmp_path, monkeypatch):
    p = bmp(tmp_path / "a.bmp", (1, 2, 3))
    h = FileHasher(tmp_path / "cache")
    d = h.digest(p)
    assert h.digest(p) == d and h.hashed == 2  # changed < RACY_NS ago: read again
    real = files_mod.time.time_ns
    monkeypatch.setattr(files_mod.time, "time_ns", lambda: real() + 3 * files_mod.RACY_NS)
    h.digest(p)
    assert h.digest(p) == d == file_digest(p) and h.hashed == 3  # settled: reused
    h.close()
    h2 = FileHasher(tmp_path / "cache")  # remembered across processes
    assert h2.digest(p) == d and h2.hashed == 0
    h2.close()


@pytest.mark.parametrize("stamp", ["real", "size+mtime only"])
def test_undecodable_file_then_replaced_gets_its_own_vector(tmp_path, monkeypatch, stamp):
    """A file that failed to decode is always hashed again: replaced by a valid file of the same
    size and mtime it gets the valid file's own vector, and the undecodable bytes never get a
    vector. ``size+mtime only`` simulates a filesystem whose ctime / inode say nothing."""
    monkeypatch.setattr(files_mod, "RACY_NS", 0)
    if stamp != "real":
        monkeypatch.setattr(files_mod, "_stat_key", lambda st: (
            (st.st_size, st.st_mtime_ns, 0, 0, 0), st.st_mtime_ns))
    good = bmp(tmp_path / "good.bmp", (0, 255, 0))
    junk = np.random.default_rng(0).integers(0, 256, good.stat().st_size, np.uint8).tobytes()
    (tmp_path / "p.bmp").write_bytes(junk)
    (tmp_path / "q.bmp").write_bytes(junk)
    man, cache = images_manifest(tmp_path, ["p.bmp", "good.bmp"]), tmp_path / "cache"
    res = encode(man, tmp_path / "f1", cache, image=ColourEncoder())
    assert [p.row for p in res.skipped] == [1]
    st = os.stat(tmp_path / "p.bmp")
    (tmp_path / "p.bmp").write_bytes(good.read_bytes())
    os.utime(tmp_path / "p.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    res = encode(man, tmp_path / "f2", cache, image=ColourEncoder())
    assert res.skipped == []
    v = vectors(tmp_path / "f2", "image")
    np.testing.assert_array_equal(v[0], v[1])
    assert not FeatureStore(cache, ColourEncoder().id).lookup([file_digest(tmp_path / "q.bmp")])
    res = encode(images_manifest(tmp_path, ["q.bmp"]), tmp_path / "f3", cache,
                 image=ColourEncoder())
    assert [p.row for p in res.skipped] == [1]  # the junk bytes stay undecodable


def test_path_reused_for_an_undecodable_file_is_not_given_the_old_vector(tmp_path, monkeypatch):
    monkeypatch.setattr(files_mod, "RACY_NS", 0)
    a = bmp(tmp_path / "a.bmp", (255, 0, 0))
    man, cache = images_manifest(tmp_path, ["a.bmp"]), tmp_path / "cache"
    encode(man, tmp_path / "f1", cache, image=ColourEncoder())
    st = os.stat(a)
    a.write_bytes(b"\0" * st.st_size)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = encode(man, tmp_path / "f2", cache, image=ColourEncoder())
    assert [(p.row, p.column) for p in res.skipped] == [(1, "image")]
    assert FeatureSet.load(tmp_path / "f2").meta["modalities"]["image"]["count"] == 0


def test_file_changed_between_hashing_and_decoding_poisons_nothing(tmp_path):
    a = bmp(tmp_path / "a.bmp", (255, 0, 0))
    red = file_digest(a)
    man, cache = images_manifest(tmp_path, ["a.bmp"]), tmp_path / "cache"
    enc = ColourEncoder()
    prepare = enc.prepare

    def changed_meanwhile(item):  # another process rewrites the file after it was hashed
        bmp(Path(item), (0, 0, 255))
        return prepare(item)

    enc.prepare = changed_meanwhile
    res = encode(man, tmp_path / "f1", cache, image=enc)
    assert [p.reason for p in res.skipped] == [
        "the file changed during the encode (re-run to encode it)"]
    assert not FeatureStore(cache, enc.id).lookup([red])  # blue's vector is not red's
    res = encode(man, tmp_path / "f2", cache, image=ColourEncoder())
    assert res.skipped == [] and vectors(tmp_path / "f2", "image")[0, 2] == 1.0  # blue


# ---------------------------------------------------------------- orphans, checkpoints, formats
def test_orphan_shards_are_collected_after_the_grace_period(tmp_path):
    cache = tmp_path / "cache"
    st = FeatureStore(cache, "x")
    st.put(["a", "b"], np.ones((2, 4)))
    killed = FeatureStore(cache, "x")  # a writer killed after appending, before its commit
    killed._append(np.ones((3, 4), "<f2"))
    killed._close_writer()
    young = FeatureStore(cache, "x")  # a running writer's brand-new shard
    young._append(np.ones((1, 4), "<f2"))
    orphan = next(p for p in st.root.glob("shard-*") if p.name != young._writer[0]
                  and p.name not in {r for (r,) in st._con.execute("SELECT shard FROM vectors")})
    legacy = st.root / ("shard-" + "0" * 32 + ".npy")  # format 1 shard
    np.save(legacy, np.ones((2, 4), np.float16))
    tmp = st.root / ".shard-1234.npy.tmp.npy"  # format 1 temp file of a killed write
    tmp.write_bytes(b"x")
    old = time.time() - 2 * store_mod.GC_GRACE_S
    for p in (orphan, legacy, tmp):
        os.utime(p, (old, old))
    fresh = FeatureStore(cache, "x")
    assert fresh.collected == 3
    assert sorted(p.name for p in st.root.glob("*shard-*")) == sorted(
        [*{r for (r,) in st._con.execute("SELECT shard FROM vectors")}, young._writer[0]])
    assert fresh.get(["a", "b"], 4).tolist() == [[1.0] * 4] * 2
    for s in (st, killed, young, fresh):
        s.close()


def test_encode_reports_collected_orphans(clean_texts, tmp_path):
    man, cache, ref = clean_texts
    (shard,) = shards(cache)
    orphan = shard.with_name("shard-" + "f" * 32 + ".f16")
    orphan.write_bytes(shard.read_bytes())
    old = time.time() - 2 * store_mod.GC_GRACE_S
    os.utime(orphan, (old, old))
    res = encode(man, tmp_path / "again", cache, text=WordEncoder())
    assert res.collected == 1 and "removed 1 orphaned cache shards" in res.table()
    assert not orphan.exists() and shard.exists()
    np.testing.assert_array_equal(vectors(tmp_path / "again", "text"), ref)


def test_every_batch_is_a_checkpoint(tmp_path):
    man, cache = texts_manifest(tmp_path), tmp_path / "cache"
    with pytest.raises(RuntimeError, match="encoder died"):
        encode(man, tmp_path / "f", cache, text=WordEncoder(fail_after_batches=3))
    assert not (tmp_path / "f").exists()
    enc = WordEncoder()
    res = encode(man, tmp_path / "f", cache, text=enc)
    assert (res.stats["text"].cached, enc.encoded) == (3 * 8, N_TEXTS - 3 * 8)


def test_format_1_cache_is_ignored_not_trusted(tmp_path):
    man, cache = texts_manifest(tmp_path), tmp_path / "cache"
    st = FeatureStore(cache, WordEncoder().id)
    st.close()
    con = sqlite3.connect(st.root / "index.sqlite", isolation_level=None)
    con.execute("DROP TABLE vectors")
    con.execute("CREATE TABLE vec (key TEXT PRIMARY KEY, shard TEXT, row INT)")
    con.close()
    np.save(st.root / ("shard-" + "a" * 32 + ".npy"), np.zeros((3, 16), np.float16))
    enc = WordEncoder()
    res = encode(man, tmp_path / "f", cache, text=enc)
    assert (res.stats["text"].cached, enc.encoded) == (0, N_TEXTS)


# ---------------------------------------------------------------- output folders as a unit
def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("when", ["in the encoder", "writing the last file"])
def test_failed_encode_into_existing_out_leaves_the_old_folder_intact(tmp_path, monkeypatch,
                                                                      when):
    bmp(tmp_path / "a.bmp", (9, 9, 9))
    man = tmp_path / "m.jsonl"
    man.write_text(json.dumps({"id": "r0", "text": "a grey square",
                               "image": str(tmp_path / "a.bmp")}) + "\n")
    out, cache = tmp_path / "out", tmp_path / "cache"
    encode(man, out, cache, text=WordEncoder(), image=ColourEncoder())
    before = snapshot(out)
    assert {"features.json", "ids.json", "text.npy", "image.npy"} <= set(before)
    bmp(tmp_path / "b.bmp", (200, 9, 9))
    man.write_text(json.dumps({"id": "other", "text": "new words here",
                               "image": str(tmp_path / "b.bmp")}) + "\n")
    if when == "in the encoder":
        with pytest.raises(RuntimeError, match="encoder died"):
            encode(man, out, cache, text=WordEncoder(), image=ColourEncoder(fail=True))
    else:  # every matrix and ids.json written, features.json not yet

        def disk_full(folder):
            assert {"text.npy", "image.npy", "ids.json"} <= {p.name for p in folder.iterdir()}
            raise OSError("disk full")

        monkeypatch.setattr(encode_output, "file_sizes", disk_full)
        with pytest.raises(OSError, match="disk full"):
            encode(man, out, cache, text=WordEncoder(), image=ColourEncoder())
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert FeatureSet.load(out).ids == ["r0"]


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "text.npy").unlink(),
     "half-written feature folder (text.npy is missing, features.json lists it)"),
    (lambda d: os.truncate(d / "text.npy", 100),
     "half-written feature folder (text.npy has 100 bytes, features.json says"),
    (lambda d: (d / "ids.json").write_text('["only-one"]'),
     "half-written feature folder (ids.json has 12 bytes, features.json says"),
    (lambda d: (d / "features.json").unlink(),
     "half-written feature folder (no features.json: the encode that wrote it did not finish)"),
], ids=["matrix-missing", "matrix-truncated", "ids-from-another-encode", "no-features-json"])
def test_half_written_feature_folder_is_refused_in_one_line(clean_texts, tmp_path, capsys,
                                                           damage, message):
    man, _, _ = clean_texts
    half = tmp_path / "clean"
    damage(half)
    with pytest.raises(PolymodalError) as e:
        FeatureSet.load(half)
    assert message in str(e.value) and str(e.value).endswith("re-run `polymodal encode`")
    assert main(["fit", "classify", "--manifest", str(man), "--features", str(half),
                 "--fusion", "unimodal:text", "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_out_holding_other_files_is_refused_before_any_work(tmp_path):
    man, out = texts_manifest(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    enc = WordEncoder()
    with pytest.raises(UsageError, match=r"--out .*out: the folder holds notes.txt, which is "
                                         r"not part of a feature folder"):
        encode(man, out, tmp_path / "cache", text=enc)
    assert enc.encoded == 0 and snapshot(out) == {"notes.txt": b"mine"}


def test_leftovers_of_a_killed_encode_are_cleaned_up(tmp_path):
    man, out, cache = texts_manifest(tmp_path), tmp_path / "out", tmp_path / "cache"
    encode(man, out, cache, text=WordEncoder())
    before = snapshot(out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stage = tmp_path / f".out.partial-{features_mod._host()}-{dead}-0123abcd"
    stage.mkdir()
    (stage / "text.npy").write_bytes(b"half")
    aside = tmp_path / ".out.old-0123abcd"  # the two-rename fallback killed between renames
    out.rename(aside)
    new_stage = features_mod.staging_dir(out)
    assert snapshot(out) == before and not stage.exists() and not aside.exists()
    new_stage.rmdir()
    encode(man, out, cache, text=WordEncoder())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------- fits: COMPLETE is last
def _write_features():
    path = Path(__file__).resolve().parents[1] / "tasks" / "tasks_testdata.py"
    spec = importlib.util.spec_from_file_location("tasks_testdata", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_features


def _retrieval(tmp: Path):
    from polymodal.tasks.retrieval.config import RetrievalConfig

    man = sample_path("openclipart")
    feats = _write_features()(tmp / "features", man, {"text": 384, "image": 1280},
                              {"text": "minilm", "image": "efficientnet-lite0"})
    return RetrievalConfig(manifest=str(man), features=str(feats), loss="cca", dim=8,
                           relevance="caption_group")


def test_retrieval_fit_failing_at_the_index_leaves_no_complete(tmp_path, monkeypatch, capsys):
    import polymodal.index as index_mod
    from polymodal.tasks.retrieval.fit import fit_retrieval

    cfg = _retrieval(tmp_path)
    fit_retrieval(cfg, tmp_path / "run", with_baselines=False, progress=False)
    assert (tmp_path / "run" / "COMPLETE").is_file()

    def broken(*a, **k):
        raise OSError("disk full while building the index")

    monkeypatch.setattr(index_mod, "build_index", broken)
    with pytest.raises(OSError, match="disk full"):  # a re-fit into the same folder
        fit_retrieval(cfg, tmp_path / "run", with_baselines=False, progress=False)
    run = tmp_path / "run"
    assert (run / "model.safetensors").is_file() and (run / "config.yaml").is_file()
    assert not (run / "COMPLETE").exists()
    assert main(["search", str(run), "--text", "a bird"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {run}: incomplete run: its fit did not finish (no COMPLETE "
                   "marker); re-run `polymodal fit retrieval … --resume` or fit again")


def test_complete_is_the_newest_file_of_a_finished_fit(tmp_path):
    from polymodal.tasks.retrieval.fit import fit_retrieval

    fit_retrieval(_retrieval(tmp_path), tmp_path / "run", with_baselines=False, progress=False)
    run = tmp_path / "run"
    others = [p for p in run.rglob("*") if p.is_file() and p.name != "COMPLETE"]
    assert (run / "index").is_dir() and others
    assert max(p.stat().st_mtime_ns for p in others) <= (run / "COMPLETE").stat().st_mtime_ns


def _classify(tmp: Path):
    from polymodal.tasks.classify import fit as fit_mod
    from polymodal.tasks.classify.config import ClassifierConfig
    from polymodal.train.config import TrainConfig

    man = sample_path("openclipart")
    feats = _write_features()(tmp / "features", man, {"text": 8},
                              {"text": "minilm"})
    cfg = ClassifierConfig(manifest=str(man), features=str(feats), modalities=["text"],
                           fusion="unimodal:text", hidden=8, train=TrainConfig(epochs=1, progress=False))
    return fit_mod, lambda out: fit_mod.fit_classifier(cfg, out, progress=False)


def _caption(tmp: Path):
    from polymodal.tasks.caption import fit as fit_mod
    from polymodal.tasks.caption.config import CaptionConfig
    from polymodal.train.config import TrainConfig

    man = sample_path("openclipart")
    feats = _write_features()(tmp / "features", man, {"image": 16},
                              {"image": "efficientnet-lite0"})
    cfg = CaptionConfig(manifest=str(man), features=str(feats), decoder="gru", embed_dim=8,
                        hidden=16, min_count=1, batch_size=64, beam=2,
                        train=TrainConfig(epochs=1, progress=False))
    return fit_mod, lambda out: fit_mod.fit_caption(cfg, out, progress=False)


def _generate(tmp: Path):
    from polymodal.tasks.generate import fit as fit_mod
    from polymodal.tasks.generate.config import GenerateConfig
    from polymodal.train.config import TrainConfig

    man = sample_path("av-digits")
    feats = _write_features()(tmp / "features", man, {"text": 8}, {"text": "minilm"})
    cfg = GenerateConfig(manifest=str(man), features=str(feats), model="cvae", width=4,
                         latent_dim=2, batch_size=64, metrics="none", limit=64,
                         train=TrainConfig(epochs=1, progress=False))
    return fit_mod, lambda out: fit_mod.fit_generate(cfg, out, progress=False)


@pytest.mark.parametrize("task, make", [("classification", _classify), ("caption", _caption),
                                        ("generate", _generate)],
                         ids=["classify", "caption", "generate"])
def test_fit_failing_after_its_weights_leaves_no_complete(tmp_path, monkeypatch, task, make):
    fit_mod, fit = make(tmp_path)
    fit(tmp_path / "ok")
    ok = tmp_path / "ok"
    others = [p for p in ok.rglob("*") if p.is_file() and p.name != "COMPLETE"]
    assert max(p.stat().st_mtime_ns for p in others) <= (ok / "COMPLETE").stat().st_mtime_ns
    assert RunFolder.open(ok, task).task == task
    write = fit_mod.atomic_write_text

    def fail_metrics(path, text):
        if Path(path).name == "metrics.json":  # written after the weights and the config
            raise OSError("disk full")
        return write(path, text)

    monkeypatch.setattr(fit_mod, "atomic_write_text", fail_metrics)
    with pytest.raises(OSError, match="disk full"):
        fit(ok)  # a re-fit into the finished folder fails late
    assert (ok / "model.safetensors").is_file() and not (ok / "COMPLETE").exists()
    with pytest.raises(PolymodalError, match="incomplete run: its fit did not finish"):
        RunFolder.open(ok, task)


def test_classify_refit_failing_after_its_encode_leaves_no_complete(tmp_path, monkeypatch):
    """The classifier encodes into RUN/features before it trains: a re-fit that dies after
    replacing those features must not leave the old run looking complete."""
    from polymodal.tasks.classify import fit as fit_mod
    from polymodal.tasks.classify.config import ClassifierConfig
    from polymodal.train.config import TrainConfig

    man, run = texts_manifest(tmp_path), tmp_path / "run"
    cfg = ClassifierConfig(manifest=str(man), modalities=["text"], fusion="unimodal:text",
                           encoders={"text": "minilm"}, cache_dir=str(tmp_path / "cache"),
                           hidden=8, train=TrainConfig(epochs=1, progress=False))
    monkeypatch.setattr(encode_mod, "build_encoder", lambda name, modality=None, **kw: WordEncoder())
    fit_mod.fit_classifier(cfg, run, progress=False)
    assert RunFolder.open(run, "classification") and (run / "features" / "text.npy").is_file()

    def broken(*a, **k):
        raise MemoryError("out of memory preparing the rows")

    monkeypatch.setattr(fit_mod, "prepare_data", broken)
    with pytest.raises(MemoryError):
        fit_mod.fit_classifier(cfg, run, progress=False)
    assert not (run / "COMPLETE").exists()


def test_two_writers_at_once_each_append_to_their_own_shard(tmp_path):
    cache = tmp_path / "cache"
    a, b = FeatureStore(cache, "x"), FeatureStore(cache, "x")
    a.put(["k1", "k2"], np.full((2, 4), 1.0))
    b.put(["k3", "k1"], np.full((2, 4), 2.0))  # k1 is a's already: left as it is
    a.put(["k4"], np.full((1, 4), 4.0))
    assert len(list(a.root.glob("shard-*.f16"))) == 2
    reader = FeatureStore(cache, "x")
    assert reader.collected == 0
    got = reader.get(["k1", "k2", "k3", "k4"], 4)[:, 0].tolist()
    assert got == [1.0, 1.0, 2.0, 4.0] and reader.dropped == 0
    for s in (a, b, reader):
        s.close()


def test_python_encode_api_reencodes_a_corrupted_entry(tmp_path):
    from polymodal.features.encode import encode as pm_encode

    class ApiWords(WordEncoder):
        def encode(self, items, batch_size=None, numpy=False):
            return encode_items(self, items, batch_size, False, numpy)

    cache, texts = tmp_path / "cache", ["a red bird", "two blue cars", "one green tree"]
    first = pm_encode(texts, ApiWords(), cache_dir=cache)
    (shard,) = shards(cache)
    data = bytearray(shard.read_bytes())
    data[32 + 2] ^= 0x01  # second stored vector
    shard.write_bytes(bytes(data))
    enc = ApiWords()
    again = pm_encode(texts, enc, cache_dir=cache)
    assert enc.encoded == 1
    np.testing.assert_array_equal(again, first)
