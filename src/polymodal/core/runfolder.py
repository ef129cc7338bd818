"""`RunFolder`: the one versioned format of a fitted run, read by search, eval, serve, report and
predict alike.

    RUN/config.yaml        format_version, task, encoders {modality: {name, id}}, config (the
                           task config), model (the model spec) and task facts (labels, …)
    RUN/model.safetensors  weights (never pickle)
    RUN/splits.csv         id,split of every manifest row (`polymodal.core.splits`)
    RUN/run.json           run facts; "provenance": package versions, git commit, manifest
                           fingerprint, encoder ids, command line, start / end time
    RUN/metrics.json …     task outputs

Paths inside ``config`` (manifest, features, cache_dir, …) are stored relative to the run folder
when they lie inside it and absolute (resolved) otherwise, so a run works from any working
directory and a run folder moved together with its features keeps working. Runs of format 1
(polymodal 0.1, no ``format_version``) stored paths relative to the working directory of the fit:
they still load when those paths resolve, else a one-line "re-fit" message says so.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Mapping

import yaml

from polymodal.core import provenance
from polymodal.core.atomic import atomic_path, atomic_write_text
from polymodal.core.errors import PolymodalError

FORMAT_VERSION = 2
CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
COMPLETE = "COMPLETE"  # written last by a fit: a run without it did not finish
RUN_INFO = "run.json"  # run facts; "provenance": what made the run (`polymodal.core.provenance`)
PATH_KEYS = ("manifest", "features", "cache_dir", "nn_space", "classifier")
KINDS = {"retrieval": "retrieval run", "classification": "classification run",
         "caption": "caption run", "generate": "generation run"}
REFIT = {"retrieval": "polymodal fit retrieval", "classification": "polymodal fit classify",
         "caption": "polymodal fit caption", "generate": "polymodal fit generate"}


def one_line(e: BaseException, limit: int = 200) -> str:
    """An exception message on one line (YAML / torch messages span several), shortened."""
    msg = " ".join(str(e).split())
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def absolute(path: str | Path | None) -> str | None:
    """``path`` made absolute and resolved (``~`` expanded); None stays None."""
    if path is None or str(path) == "":
        return None
    return str(Path(path).expanduser().resolve())


def absolute_paths(config: Any) -> Any:
    """A copy of a task config (pydantic model) with its path fields (`PATH_KEYS`) absolute, so
    the run it makes works from any working directory."""
    fields = type(config).model_fields
    return config.model_copy(update={k: absolute(getattr(config, k)) for k in PATH_KEYS
                                     if k in fields and getattr(config, k)})


class RunFolder:
    """A run folder: ``RunFolder.open(path, task)`` to read one, ``RunFolder(path)`` +
    `write_config` / `save_weights` to write one."""

    def __init__(self, root: str | Path, doc: Mapping[str, Any] | None = None):
        self.root = Path(root)
        self.doc: dict[str, Any] = dict(doc or {})

    # ------------------------------------------------------------ reading
    @classmethod
    def open(cls, root: str | Path, task: str | None = None) -> "RunFolder":
        """Read ``root/config.yaml``; a one-line error when the folder is missing, is not a run,
        is another task's run (``task`` given) or has a format this version cannot read."""
        root = Path(root)
        kind = KINDS.get(task or "", "run")
        if root.is_file():
            raise PolymodalError(f"{root}: is a file, not a run folder")
        if not root.is_dir():
            raise PolymodalError(f"{root}: run folder not found")
        path = root / CONFIG
        if not path.is_file():
            raise PolymodalError(f"{root}: not a {kind} (no {CONFIG})")
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise PolymodalError(f"{path}: corrupt run config ({type(e).__name__}: "
                                 f"{one_line(e)})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("task"), str):
            raise PolymodalError(f"{path}: corrupt run config (no 'task')")
        version = doc.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise PolymodalError(f"{root}: run format {version!r} is not readable by this "
                                 f"polymodal (it reads formats 1-{FORMAT_VERSION}); upgrade "
                                 f"polymodal or re-fit with `{REFIT.get(doc['task'], 'polymodal fit')}`")
        if task is not None and doc["task"] != task:
            raise PolymodalError(f"{root}: a '{doc['task']}' run, not a {kind}")
        if not isinstance(doc.get("config"), dict):
            raise PolymodalError(f"{path}: corrupt run config (no 'config' mapping)")
        if version >= 2 and not (root / COMPLETE).is_file():
            raise PolymodalError(f"{root}: incomplete run: its fit did not finish (no "
                                 f"{COMPLETE} marker); re-run `{REFIT.get(doc['task'], 'polymodal fit')}"
                                 " … --resume` or fit again")
        return cls(root, doc)

    @property
    def task(self) -> str:
        return self.doc["task"]

    @property
    def format_version(self) -> int:
        return int(self.doc.get("format_version", 1))

    @property
    def config(self) -> dict[str, Any]:
        """The task config with every stored path resolved (absolute)."""
        cfg = dict(self.doc.get("config") or {})
        for k in PATH_KEYS:
            if cfg.get(k):
                cfg[k] = str(self.resolve(cfg[k], k))
        return cfg

    @property
    def encoders(self) -> dict[str, dict[str, str]]:
        """``{modality: {"name": …, "id": …}}`` (format 1 stored a name or an id only)."""
        out = {}
        for m, e in (self.doc.get("encoders") or {}).items():
            if isinstance(e, dict):
                out[m] = {"name": str(e.get("name")), "id": str(e.get("id") or e.get("name"))}
            else:  # format 1: a name (retrieval) or an id "name|settings…" (classification)
                out[m] = {"name": str(e).split("|", 1)[0].split("@", 1)[0], "id": str(e)}
        return out

    def resolve(self, stored: str | Path, what: str = "path") -> Path:
        """A path from the config: absolute as is, relative to the run folder (format 2) or, for
        format 1 runs, to the working directory (the only thing that format knew)."""
        p = Path(stored).expanduser()
        if p.is_absolute():
            return p
        if self.format_version >= 2:
            return (self.root / p).resolve()
        return (self.root / p).resolve() if (self.root / p).exists() else p.resolve()

    def require(self, key: str) -> Path:
        """The config path ``key``, which must exist (else one line naming it)."""
        value = (self.doc.get("config") or {}).get(key) or self.doc.get(key)
        if not value:
            raise PolymodalError(f"{self.root}: the run config has no '{key}'")
        p = self.resolve(value, key)
        if not p.exists():
            hint = (f"; this run was written by polymodal 0.1 with paths relative to the "
                    f"directory it ran in: run from there or re-fit with "
                    f"`{REFIT.get(self.task, 'polymodal fit')}`"
                    if self.format_version < 2 else "")
            raise PolymodalError(f"{self.root}: its {key} {p} is missing{hint}")
        return p

    def file(self, name: str) -> Path:
        return self.root / name

    def load_weights(self, name: str = WEIGHTS) -> dict:
        """The safetensors state dict (a one-line error when missing or corrupt)."""
        from safetensors.torch import load_file

        path = self.root / name
        if not path.is_file():
            raise PolymodalError(f"{self.root}: {name} is missing")
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises several types for a corrupt file
            raise PolymodalError(f"{path}: corrupt weights ({type(e).__name__}: "
                                 f"{one_line(e)})") from None

    def read_json(self, name: str) -> Any:
        try:
            return json.loads((self.root / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PolymodalError(f"{self.root}: {name} is missing") from None
        except (OSError, ValueError) as e:
            raise PolymodalError(f"{self.root / name}: cannot read ({one_line(e)})") from None

    # ------------------------------------------------------------ writing
    def begin(self) -> "RunFolder":
        """Start (or restart) a fit in this folder: until `finish`, readers refuse the run, so
        a fit that fails late never leaves a folder that looks complete."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / COMPLETE).unlink(missing_ok=True)
        self.update_json(RUN_INFO, {"provenance": provenance.started()})
        return self

    def finish(self) -> Path:
        """Record the end of the provenance in ``run.json`` (manifest fingerprint, encoder ids,
        end time) and mark the run complete: the last file a fit writes."""
        doc: Any = {}
        with contextlib.suppress(OSError, UnicodeDecodeError, yaml.YAMLError):
            doc = yaml.safe_load((self.root / CONFIG).read_text(encoding="utf-8"))
        rf = RunFolder(self.root, doc if isinstance(doc, dict) else {})
        config = rf.config if isinstance(rf.doc.get("config"), dict) else {}
        prov = dict(self._read_dict(RUN_INFO).get("provenance") or provenance.started())
        prov.update(provenance.finished(config, rf.encoders))
        self.update_json(RUN_INFO, {"provenance": prov})
        atomic_write_text(self.root / COMPLETE, f"format_version: {FORMAT_VERSION}\n")
        return self.root / COMPLETE

    def _read_dict(self, name: str) -> dict[str, Any]:
        """A JSON object file of the run, {} when missing or not an object."""
        try:
            obj = json.loads((self.root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return obj if isinstance(obj, dict) else {}

    def update_json(self, name: str, obj: Mapping[str, Any]) -> Path:
        """Merge ``obj`` into the JSON object file ``name`` (top-level keys), atomically."""
        merged = {**self._read_dict(name), **obj}
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / name, json.dumps(merged, indent=1))
        return self.root / name

    def store_path(self, p: str | Path | None) -> str | None:
        """How a path is stored: relative to the run folder when inside it, else absolute."""
        if p is None or str(p) == "":
            return None
        full = Path(p).expanduser().resolve()
        try:
            return full.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(full)

    def write_config(self, task: str, config: Mapping[str, Any],
                     encoders: Mapping[str, Mapping[str, str]], **extra: Any) -> Path:
        """Write ``config.yaml`` (atomically) with the format version and the stored paths."""
        cfg = dict(config)
        for k in PATH_KEYS:
            if cfg.get(k):
                cfg[k] = self.store_path(cfg[k])
        self.doc = {"format_version": FORMAT_VERSION, "task": task,
                    "encoders": {m: {"name": str(e["name"]), "id": str(e["id"])}
                                 for m, e in encoders.items()},
                    **extra, "config": cfg}
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / CONFIG, yaml.safe_dump(self.doc, sort_keys=False,
                                                             allow_unicode=True))
        return self.root / CONFIG

    def save_weights(self, state: Mapping[str, Any], name: str = WEIGHTS) -> Path:
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.root / name) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        return self.root / name

    def write_json(self, name: str, obj: Any) -> Path:
        atomic_write_text(self.root / name, json.dumps(obj, indent=1))
        return self.root / name


def read_run(run: str | Path, task: str) -> tuple[Path, dict, dict]:
    """``(folder, config doc with resolved paths, weights)`` of a ``task`` run."""
    rf = RunFolder.open(run, task)
    doc = dict(rf.doc)
    doc["config"] = rf.config
    doc["encoders"] = rf.encoders  # {modality: {"name", "id"}}, also for format 1
    return rf.root, doc, rf.load_weights()
