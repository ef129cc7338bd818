"""Sort-of-CLEVR (Santoro et al. 2017, the Relation Networks benchmark), rendered offline.

Each scene is a 75x75 PNG with 6 objects, one of each colour (red, green, blue, orange, gray,
yellow), each a circle (radius 5) or a 10x10 square, at random non-overlapping positions on a
white background (centres at least 12 px apart along x or y, so no two shapes touch). Each
question is about one colour:

* non-relational: ``shape`` (circle / square), ``horizontal`` (left / right of the image
  centre), ``vertical`` (top / bottom);
* relational: ``closest`` / ``furthest`` (the shape of the object nearest to / furthest from
  it, Euclidean distance between centres; scenes with a tie are redrawn) and ``count`` (how
  many objects, itself included, have its shape: 1..6).

``questions`` per image (default 20) are drawn without repetition, half relational; the
manifest has one row per question: ``id, image, text, label, split, image_id, colour,
question_type`` (relational / non-relational) and ``template`` (the six names above).
``scenes.json`` holds each image's objects (colour, shape, centre [x, y] in pixels, y down), so
every answer can be re-computed. The split is by image (80 / 10 / 10, by seed): all questions
of one image are in one split. Everything is deterministic with ``seed``. No source folder is
needed (``--source`` is ignored).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from polymodal.core.errors import UsageError
from polymodal.data.datasets._common import OutputFolder, bar, say, split_counts

SIZE = 75
HALF = 5  # circle radius / half the square's side
MIN_GAP = 2 * HALF + 2  # centres this far apart along x or y: shapes never touch
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
           "orange": (255, 156, 0), "gray": (128, 128, 128), "yellow": (255, 255, 0)}
SHAPES = ("circle", "square")
NON_RELATIONAL = ("shape", "horizontal", "vertical")
RELATIONAL = ("closest", "furthest", "count")
QUESTIONS = {
    "shape": "What is the shape of the {c} object?",
    "horizontal": "Is the {c} object on the left or right of the image?",
    "vertical": "Is the {c} object on the top or bottom of the image?",
    "closest": "What is the shape of the object closest to the {c} object?",
    "furthest": "What is the shape of the object furthest from the {c} object?",
    "count": "How many objects have the same shape as the {c} object?",
}


def random_scene(rng: np.random.Generator) -> list[dict]:
    """Six objects ``{colour, shape, center: [x, y]}``, non-overlapping, no distance ties."""
    while True:
        centres: list[tuple[int, int]] = []
        tries = 0
        while len(centres) < len(COLOURS) and tries < 1000:
            tries += 1
            c = (int(rng.integers(HALF, SIZE - HALF)), int(rng.integers(HALF, SIZE - HALF)))
            if all(max(abs(c[0] - o[0]), abs(c[1] - o[1])) >= MIN_GAP for o in centres):
                centres.append(c)
        if len(centres) < len(COLOURS):
            continue
        objs = [{"colour": col, "shape": SHAPES[int(rng.integers(2))], "center": list(c)}
                for col, c in zip(COLOURS, centres)]
        if not _has_tie(objs):
            return objs


def _d2(a: dict, b: dict) -> int:
    return (a["center"][0] - b["center"][0]) ** 2 + (a["center"][1] - b["center"][1]) ** 2


def _has_tie(objs: list[dict]) -> bool:
    for o in objs:
        ds = sorted(_d2(o, p) for p in objs if p is not o)
        if ds[0] == ds[1] or ds[-1] == ds[-2]:
            return True
    return False


def answer(objs: list[dict], colour: str, template: str) -> str:
    """The answer to ``template`` about the ``colour`` object of scene ``objs``."""
    o = next(p for p in objs if p["colour"] == colour)
    others = [p for p in objs if p is not o]
    if template == "shape":
        return o["shape"]
    if template == "horizontal":
        return "left" if o["center"][0] < SIZE / 2 else "right"
    if template == "vertical":
        return "top" if o["center"][1] < SIZE / 2 else "bottom"
    if template == "closest":
        return min(others, key=lambda p: _d2(o, p))["shape"]
    if template == "furthest":
        return max(others, key=lambda p: _d2(o, p))["shape"]
    if template == "count":
        return str(sum(p["shape"] == o["shape"] for p in objs))
    raise UsageError(f"unknown question template '{template}'")


def render(objs: list[dict]):
    """The scene as a 75x75 RGB PIL image."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for o in objs:
        x, y = o["center"]
        box = (x - HALF, y - HALF, x + HALF - 1, y + HALF - 1)
        (draw.ellipse if o["shape"] == "circle" else draw.rectangle)(box, fill=COLOURS[o["colour"]])
    return img


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def build_sort_of_clevr(source: Path, out: Path, seed: int = 0, progress: bool = True,
                        n_images: int = 10000, questions: int = 20) -> Path:
    """Write ``n_images`` scenes with ``questions`` questions each (see the module doc)."""
    n_images = _check_int("n_images", n_images, 1, 10 ** 7)
    n_combos = len(COLOURS) * len(NON_RELATIONAL)
    questions = _check_int("questions", questions, 1, 2 * n_combos)
    from polymodal.core.atomic import atomic_write_text

    rng = np.random.default_rng(seed)
    order = rng.permutation(n_images)
    n_test = n_val = max(1, round(n_images / 10)) if n_images >= 3 else 0
    split_of = {int(i): "test" if k < n_test else "val" if k < n_test + n_val else "train"
                for k, i in enumerate(order)}
    combos = {kind: [(c, t) for c in COLOURS for t in temps]
              for kind, temps in (("non-relational", NON_RELATIONAL), ("relational", RELATIONAL))}
    n_rel = questions // 2
    per_kind = {"non-relational": questions - n_rel, "relational": n_rel}
    if max(per_kind.values()) > n_combos:
        per_kind = {"non-relational": n_combos, "relational": questions - n_combos}
    rows, scenes = [], {}
    with OutputFolder(out) as od:
        img_dir = od.stage("images")
        for i in bar(range(n_images), progress, "sort-of-clevr scenes"):
            objs = random_scene(rng)
            image_id = f"soc_{i:06d}"
            render(objs).save(img_dir / f"{image_id}.png", optimize=False)
            scenes[image_id] = objs
            q = 0
            for kind, k in per_kind.items():
                pick = rng.choice(len(combos[kind]), size=k, replace=False)
                for j in sorted(int(p) for p in pick):
                    colour, template = combos[kind][j]
                    rows.append({"id": f"{image_id}_q{q:02d}", "image": f"images/{image_id}.png",
                                 "text": QUESTIONS[template].format(c=colour),
                                 "label": answer(objs, colour, template),
                                 "split": split_of[i], "image_id": image_id, "colour": colour,
                                 "question_type": kind, "template": template})
                    q += 1
        counts = split_counts(rows)
        info = {"name": "sort-of-clevr", "seed": seed, "rows": len(rows), "images": n_images,
                "questions_per_image": questions, "splits": counts, "image_size": SIZE,
                "scenes": "scenes.json", "media_dirs": ["images"]}
        atomic_write_text(od.out / "scenes.json", json.dumps(scenes, separators=(",", ":")))
        path = od.commit(rows, info)
    say(f"sort-of-clevr: {n_images} images, {len(rows)} questions -> {path} (train "
        f"{counts['train']}, val {counts['val']}, test {counts['test']})", progress)
    return path
