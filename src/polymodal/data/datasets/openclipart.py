"""OpenClipart drawings with captions rebuilt from messy metadata.

Source: a folder with ``captions.jsonl`` (id, image, title, description, keywords, category)
and ``images/``. Images are referenced in place (paths relative to the manifest), not copied.

Caption rules (see `caption_rows`). Many titles name a collection, not the drawing
("gramastar" x1375, "Part of the Flat Icon Collection (...)", "Lemon SVG theme", "card" x226).
A title is a *collection title* when it matches a known collection pattern, is shared by
``COLLECTION_MIN`` or more drawings, is an author's name, or is a "Clipart by NAME - X" title
shared by several drawings (X is then another drawing's file name). For those, the caption is
built from the file name (split on ``_``/``-``/camelCase/digits, trailing numbers and author-name
fragments dropped; author fragments are learned from file names like ``bicycle_philippe_colin_01``
whose title covers the first words) plus up to 3 of the most specific keywords (generic ones
such as category names, author names and those on 1,000+ drawings are dropped). Titles shared
by a few drawings are kept and completed with the file-name words they lack ("Chess pieces" ->
"Chess pieces king"). Star polygons and playing cards get templated captions. ``text`` is
[caption] or [caption, description] when the description is informative.

Split: a FIXED held-out split from a hash of the drawing's file name (not seed-dependent; copies
of a drawing filed in two folders share it): about 15 % test (1,100+ of 7,367), 7 % val, rest
train. Rows with identical captions share a ``caption_group`` so retrieval can count them as
correct.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymodal.data.datasets._common import (OutputFolder, bar, check_limit, find_source, rel,
                                             say, split_counts)
from polymodal.core.errors import DataError

EXPECTED = "captions.jsonl and images/ (OpenClipart drawings)"
COLLECTION_MIN = 20  # a title on this many drawings describes a collection, not a drawing
GENERIC_DF = 1000  # keywords on this many drawings say nothing about one drawing
TEST_FRACTION, VAL_FRACTION = 0.15, 0.07
COLLECTION_RE = re.compile(
    r"collection|\btheme\b|-theme|icon-?theme|iconset|icon set|\bicons\b|cliparts|\bclipart\b"
    r"|\bsvg\b|symbol_signs|s[iu]bmission|gramastar", re.I)
CLIPART_BY_RE = re.compile(r"^clip\s*art by [^-]+ - (.+)$", re.I)
JUNK_TOKENS = {"http", "https", "www", "com", "org", "svg", "png", "eps"}
JUNK_KEYWORDS = {"hash", "magick"}
SUITS = {"s": "spades", "h": "hearts", "d": "diamonds", "c": "clubs"}
RANKS = {"a": "ace", "k": "king", "q": "queen", "j": "jack"}
STAR_RE = re.compile(r"^star_(\d+)pt(\d+)step$")
CARD_RE = re.compile(r"^(bordered|simple|white|ornamental)_([shdc])_(\w+)$")
JOKER_RE = re.compile(r"^(bordered|simple|white|ornamental)_jk_([br])$")
BACK_RE = re.compile(r"^back(\d+)$")
# file names written as {title}_{author}_{NN}: the author part ends in _01, _01r, _r or _
AUTHOR_SUFFIX_RE = re.compile(r"_(?:[0-9]+[a-z]?|r|)$")


def find_openclipart(source: str | Path) -> Path:
    """The OpenClipart folder under ``source`` (itself or ``source/openclipart``)."""
    return find_source(source, "openclipart", "openclipart", ["captions.jsonl", "images"],
                       EXPECTED)


def load_captions(folder: Path) -> list[dict[str, Any]]:
    """Rows of ``captions.jsonl``; a bad line raises `DataError` naming file and row."""
    path = folder / "captions.jsonl"
    rows = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise DataError(f"invalid JSON line ({e})", file=str(path), row=n) from None
            for key in ("id", "image"):
                if not isinstance(obj, dict) or not isinstance(obj.get(key), str) or not obj[key]:
                    raise DataError(f"missing '{key}'", file=str(path), row=n, column=key)
            kw = obj.get("keywords") or []
            obj["keywords"] = [str(k) for k in kw] if isinstance(kw, list) else [str(kw)]
            for key in ("title", "description", "category"):
                obj[key] = str(obj.get(key) or "").strip()
            rows.append(obj)
    if not rows:
        raise DataError("no rows", file=str(path))
    return rows


def tokens(text: str, split_case: bool = True) -> list[str]:
    """Lower-case word tokens; splits camelCase (optional) and letter/digit boundaries."""
    if split_case:
        text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    text = re.sub(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])", " ", text)
    return [t for t in re.split(r"[^0-9a-zà-ÿ]+", text.lower()) if t]


def _match(a: str, b: str) -> bool:
    return a == b or (min(len(a), len(b)) >= 3 and (a.startswith(b) or b.startswith(a)))


def basename(drawing_id: str) -> str:
    return drawing_id.rstrip("/").rsplit("/", 1)[-1]


def fixed_split(drawing_id: str) -> str:
    """test / val / train from a hash of the file name: fixed, independent of any seed."""
    h = int(hashlib.sha1(basename(drawing_id).lower().encode("utf-8")).hexdigest()[:8], 16)
    u = h / 2 ** 32
    return "test" if u < TEST_FRACTION else "val" if u < TEST_FRACTION + VAL_FRACTION else "train"


@dataclass
class CaptionStats:
    """Dataset-wide counts the caption rules need."""

    title_count: Counter = field(default_factory=Counter)
    keyword_df: Counter = field(default_factory=Counter)
    description_count: Counter = field(default_factory=Counter)
    authors: set[str] = field(default_factory=set)
    group_common: dict[str, set[str]] = field(default_factory=dict)  # title -> common words
    categories: set[str] = field(default_factory=set)


def _norm_title(title: str) -> str:
    return " ".join(title.lower().split())


def _clipart_by(title: str) -> str | None:
    m = CLIPART_BY_RE.match(title.strip())
    return m.group(1).strip() if m else None


def _collection_by_pattern(title: str, stats: CaptionStats) -> bool:
    t = _norm_title(title)
    if not t or (COLLECTION_RE.search(t) and _clipart_by(title) is None):
        return True
    if stats.title_count[t] >= COLLECTION_MIN:
        return True
    return _clipart_by(title) is not None and stats.title_count[t] >= 2


def collect_stats(rows: list[dict[str, Any]]) -> CaptionStats:
    """Title / keyword / description counts and author-name fragments learned from file names
    (words after the last title word, e.g. 'philippe colin' in bicycle_philippe_colin_01)."""
    st = CaptionStats()
    for r in rows:
        st.title_count[_norm_title(r["title"])] += 1
        st.keyword_df.update({_norm_kw(k) for k in r["keywords"]})
        st.description_count[" ".join(r["description"].lower().split())] += 1
        if r.get("category"):
            st.categories.add(_norm_kw(r["category"]))
    cand: Counter = Counter()
    title_vocab: Counter = Counter()
    for t in {_norm_title(r["title"]) for r in rows if not _collection_by_pattern(r["title"], st)}:
        title_vocab.update(set(tokens(t, split_case=False)))
    followers: dict[str, set[str]] = {}
    last_word: dict[str, set[str]] = {}
    for r in rows:
        ftoks = tokens(basename(r["id"]))
        for f in ftoks[1:]:
            followers.setdefault(f, set()).add(ftoks[0])
        if len(ftoks) > 1 and ftoks[-1].isalpha():
            last_word.setdefault(ftoks[-1], set()).add(ftoks[0])
        if _collection_by_pattern(r["title"], st):
            continue
        title_toks = tokens(r["title"], split_case=" " not in r["title"].strip())
        last = max((i for i, f in enumerate(ftoks) if any(_match(f, t) for t in title_toks)),
                   default=None)
        if last is not None and AUTHOR_SUFFIX_RE.search(basename(r["id"])):
            cand.update(f for f in ftoks[last + 1:] if f.isalpha() and len(f) >= 2)
    # an author fragment sits between the title words and a _NN / _r / _ suffix, follows
    # several drawings' names and is (nearly) never a title word: 'benji park' yes
    st.authors = {t for t in cand if len(followers.get(t, ())) >= 2 and title_vocab[t] < 3}
    # ... or ends the names of 20+ different drawings without a suffix ('cello_ganson')
    st.authors |= {t for t, firsts in last_word.items() if len(firsts) >= 20 and len(t) >= 2
                   and title_vocab[t] < 3}
    # file-name words shared by half or more of the drawings with the same title (2+) tell
    # nothing about one drawing: 'aiga' in aiga_stairs_down, 'zazou' in Sallite drawings
    words: dict[str, list[set[str]]] = {}
    for r in rows:
        words.setdefault(_norm_title(r["title"]), []).append(set(name_words(r["id"], st)))
    for t, sets in words.items():
        if len(sets) >= 2:
            c = Counter(w for s in sets for w in s)
            st.group_common[t] = {w for w, n in c.items() if n >= max(2, len(sets) / 2)}
    return st


def _norm_kw(k: str) -> str:
    return " ".join(re.split(r"[\s_\-]+", k.lower())).strip()


def is_collection_title(title: str, stats: CaptionStats) -> bool:
    """Does ``title`` name a collection (or an author) rather than the drawing?"""
    if _collection_by_pattern(title, stats):
        return True
    toks = tokens(title, split_case=False)
    return len(toks) >= 2 and all(any(_match(t, a) for a in stats.authors) for t in toks)


def name_words(drawing_id: str, stats: CaptionStats) -> list[str]:
    """Words of the file name without trailing numbers, single letters and author fragments."""
    name = re.sub(r"^clip_?art_by_.*?_-_", "", basename(drawing_id), flags=re.I)
    toks = [t for t in tokens(name) if t not in JUNK_TOKENS]
    while len(toks) > 1 and (toks[-1].isdigit() or len(toks[-1]) == 1
                             or toks[-1] in stats.authors):
        toks.pop()
    if not any(t.isalpha() and len(t) >= 2 for t in toks):
        return []  # codes like 70a001
    while toks and toks[0].isdigit():
        toks.pop(0)
    return toks


def _distinct_words(row: dict[str, Any], stats: CaptionStats) -> list[str]:
    """File-name words without those common to the drawings sharing the row's title."""
    words = name_words(row["id"], stats)
    common = stats.group_common.get(_norm_title(row["title"]), set())
    return [w for w in words if w not in common]


def specific_keywords(row: dict[str, Any], stats: CaptionStats, have: list[str], n: int = 3
                      ) -> list[str]:
    """Up to ``n`` of the row's rarest informative keywords not already in ``have``."""
    out: list[str] = []
    seen = list(have)
    kws = sorted({_norm_kw(k) for k in row["keywords"]}, key=lambda k: (stats.keyword_df[k], k))
    for k in kws:
        ktoks = k.split()
        if (not k or k in JUNK_KEYWORDS or stats.keyword_df[k] >= GENERIC_DF
                or k in stats.categories or "theme" in k or re.fullmatch(r"0x[0-9a-f]+", k)
                or all(t in stats.authors for t in ktoks)):
            continue
        if all(any(_match(t, s) for s in seen) for t in ktoks):
            continue
        out.append(k)
        seen += ktoks
        if len(out) == n:
            break
    return out


def _special(drawing_id: str) -> str | None:
    b = basename(drawing_id)
    if m := STAR_RE.match(b):
        return f"star polygon with {int(m.group(1))} points, step {int(m.group(2))}"
    if "/cards/" in drawing_id:
        if m := CARD_RE.match(b):
            rank = RANKS.get(m.group(3), m.group(3))
            return f"{rank} of {SUITS[m.group(2)]} playing card, {m.group(1)} style"
        if m := JOKER_RE.match(b):
            colour = "black" if m.group(2) == "b" else "red"
            return f"{colour} joker playing card, {m.group(1)} style"
        if m := BACK_RE.match(b):
            return f"back of a playing card, design {int(m.group(1))}"
    return None


def clean_title(title: str) -> str:
    """Title with a 'Clipart by NAME - ' prefix removed and underscores / slug case undone."""
    t = _clipart_by(title) or title
    t = t.replace("_", " ").strip()
    if " " not in t:
        t = " ".join(tokens(t)) if re.search(r"[a-z][A-Z]|[A-Za-z][0-9]", t) else t
    return " ".join(t.split())


def caption_for(row: dict[str, Any], stats: CaptionStats) -> tuple[str, str]:
    """(main caption, kind) for one drawing; kind is special / collection / shared / title."""
    special = _special(row["id"])
    if special:
        return special, "special"
    title = row["title"]
    if is_collection_title(title, stats):
        words = _distinct_words(row, stats) or name_words(row["id"], stats)
        kws = specific_keywords(row, stats, words)
        cap = " ".join(words)
        if kws:
            cap = f"{cap}, {', '.join(kws)}" if cap else ", ".join(kws)
        cap = cap or clean_title(title)
        if _collection_by_pattern(cap, stats):  # e.g. a drawing named 'people' in 'people'
            cap = f"{cap} clip art"
        return cap, "collection"
    cap = clean_title(title)
    # a shared title gets the file-name words it lacks, unless the name is {title}_{author}_NN
    if stats.title_count[_norm_title(title)] >= 2 and not AUTHOR_SUFFIX_RE.search(
            basename(row["id"])):
        have = tokens(cap, split_case=False)
        extra = [w for w in _distinct_words(row, stats)
                 if not any(_match(w, h) for h in have) and not w.isdigit()]
        if extra:
            return f"{cap} {' '.join(extra)}", "shared"
    return cap, "title"


def _description(row: dict[str, Any], stats: CaptionStats, main: str) -> str | None:
    d = " ".join(row["description"].split())
    key = d.lower()
    if (len(d) < 3 or re.search(r"https?:|www\.|@|HASH\(0x", d) or COLLECTION_RE.search(d)
            or stats.description_count[key] >= COLLECTION_MIN
            or key in (main.lower(), _norm_title(row["title"]))):
        return None
    return d if len(d) <= 300 else d[:300].rsplit(" ", 1)[0] + " …"


def caption_rows(rows: list[dict[str, Any]], stats: CaptionStats | None = None
                 ) -> list[dict[str, Any]]:
    """Per drawing: id, text ([caption] or [caption, description]), caption_kind,
    caption_group (same number for identical captions), split (fixed) and the raw metadata."""
    stats = stats or collect_stats(rows)
    groups: dict[str, int] = {}
    out = []
    for r in rows:
        main, kind = caption_for(r, stats)
        desc = _description(r, stats, main)
        key = " ".join(main.lower().split())
        group = groups.setdefault(key, len(groups))
        out.append({"id": r["id"], "image": r["image"], "text": [main] + ([desc] if desc else []),
                    "label": r.get("category") or None, "split": fixed_split(r["id"]),
                    "title": r["title"], "keywords": r["keywords"], "category": r.get("category"),
                    "description": r["description"], "caption_kind": kind,
                    "caption_group": group})
    return out


def caption_report(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many drawings share their main caption with another drawing, and in how many groups."""
    sizes = Counter(r["caption_group"] for r in rows)
    return {"drawings": len(rows), "unique_captions": len(sizes),
            "drawings_with_shared_caption": sum(n for n in sizes.values() if n > 1),
            "shared_caption_groups": sum(1 for n in sizes.values() if n > 1),
            "largest_group": max(sizes.values(), default=0)}


def build_openclipart(source: Path, out: Path, seed: int = 0, progress: bool = True,
                      limit: int | None = None, copy: bool = False) -> Path:
    """Write the OpenClipart manifest (image, text, label = category; fixed split; ``seed`` is
    unused because the split is fixed). ``limit`` keeps the first N drawings (captions still
    use statistics over all rows); ``copy=True`` copies images into out/images."""
    limit = check_limit(limit)
    folder = find_openclipart(source)
    raw = load_captions(folder)
    rows = caption_rows(raw)[:limit] if limit else caption_rows(raw)
    with OutputFolder(out) as od:
        img_dir = od.stage("images") if copy else None
        missing = 0
        for r in bar(rows, progress, "openclipart"):
            src = folder / r["image"]
            if not src.is_file():
                missing += 1
            if img_dir is not None and src.is_file():
                dest = img_dir / r["image"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                r["image"] = f"images/{Path(r['image']).as_posix()}"
            else:
                r["image"] = rel(src, od.out)
        report = caption_report(rows)
        counts = split_counts(rows)
        info = {"name": "openclipart", "source": str(folder), "seed": seed, "rows": len(rows),
                "splits": counts, "split_rule": f"sha1(file name): test < {TEST_FRACTION}, "
                f"val < {TEST_FRACTION + VAL_FRACTION}", "captions": report,
                "caption_kinds": dict(Counter(r["caption_kind"] for r in rows)),
                "missing_images": missing, "media_dirs": ["images"] if copy else []}
        path = od.commit(rows, info)
    say(f"openclipart: {len(rows)} drawings -> {path} (train {counts['train']}, val "
        f"{counts['val']}, test {counts['test']}); {report['unique_captions']} distinct captions, "
        f"{report['drawings_with_shared_caption']} drawings share their caption with another "
        f"({report['shared_caption_groups']} groups, largest {report['largest_group']}; see "
        f"column caption_group)" + (f"; {missing} image files missing" if missing else ""),
        progress)
    return path
