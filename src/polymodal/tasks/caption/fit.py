"""Image -> text: a caption decoder (GRU or prefix Transformer, `gen_models`) on cached image
features, scored against a nearest-neighbour retrieval baseline.

``fit_caption(config, out)`` encodes the manifest's images (cached), builds a vocabulary from
the train captions (`caption_tokens`: lower case, words only), trains with teacher forcing on
every caption of every train row (early stopping on val CIDEr-D of greedy captions) and scores
the test split against ALL captions of each image: BLEU-1..4, CIDEr-D, ROUGE-L for greedy and
beam decoding and for the nearest-neighbour baseline (the first caption of the most similar
training image: cosine on the image features, or in a retrieval run's shared space when
``nn_space`` names one). Writes::

    RUN/config.yaml  RUN/model.safetensors  RUN/vocab.json  RUN/metrics.json
    RUN/samples.jsonl (every test image: references, greedy, beam, nearest-neighbour)
    RUN/samples.png (8 random test drawings with their captions)
    RUN/train_log.csv  RUN/features/ (unless ``features`` was given)

Conditioning: the GRU starts from the image feature (initial state); the Transformer reads it
as ``prefix`` learned tokens (prefix-LM); ``decoder: rag`` (`rag_fit`) cross-attends to the image
and to the captions of its nearest training images, can copy their words, and re-ranks its beam
by consensus with them; its run also holds the neighbour index (``neighbours.*``) and its
metrics add the re-ranked beam and Devlin et al.'s consensus nearest neighbour ("nn-consensus").
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from polymodal.core.atomic import atomic_path, atomic_write_text
from polymodal.core.errors import PolymodalError, UsageError
from polymodal.core.runfolder import RunFolder, absolute_paths
from polymodal.core.splits import write_splits
from polymodal.metrics.textgen import caption_metrics, cider_d
from polymodal.nn.generative import build_captioner, caption_loss
from polymodal.tasks.caption.config import CaptionConfig
from polymodal.tasks.caption.data import (CaptionData, build_vocab, encode_caption,
                                         load_caption_data, _pad)
from polymodal.tasks.caption.predict import decode
from polymodal.train.loop import fit_loop, seed_everything, torch_threads


# ---------------------------------------------------------------- baseline
def nearest_neighbour_captions(train_x: np.ndarray, train_caps: Sequence[str],
                               query_x: np.ndarray) -> list[str]:
    """For each query vector, the caption of the most cosine-similar training vector."""
    def unit(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float32)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)

    t, q = unit(train_x), unit(query_x)
    best = np.concatenate([(q[s:s + 1024] @ t.T).argmax(1) for s in range(0, len(q), 1024)])
    return [train_caps[i] for i in best]


def _nn_space(run_dir: str, feats: np.ndarray) -> np.ndarray:
    from polymodal.tasks.retrieval.predict import load_run

    run = load_run(run_dir)
    cfg = run.config
    if "image" not in (cfg.query, cfg.target):
        raise UsageError(f"{run_dir}: this retrieval run does not embed images")
    side = "query" if cfg.query == "image" else "target"
    with torch.inference_mode():
        return run.model.embed(torch.from_numpy(feats), side).numpy()


# ---------------------------------------------------------------- train / evaluate
def _spec(cfg: CaptionConfig, feat_dim: int, vocab_size: int) -> dict:
    common = {"feat_dim": feat_dim, "vocab_size": vocab_size, "embed_dim": cfg.embed_dim,
              "dropout": cfg.dropout, "max_len": cfg.max_len}
    if cfg.decoder == "gru":
        return {"kind": "gru", "hidden": cfg.hidden, **common}
    return {"kind": "transformer", "layers": cfg.layers, "heads": cfg.heads,
            "prefix": cfg.prefix, **common}


def fit_caption(config: CaptionConfig, out: str | Path, resume: bool = False,
                progress: bool = True) -> dict:
    """Train a caption decoder and score it against the nearest-neighbour baseline; returns
    the content of metrics.json."""
    with torch_threads(config.threads):  # restored afterwards, also on error
        return _fit_caption(config, out, resume, progress)


def _fit_caption(config: CaptionConfig, out: str | Path, resume: bool = False,
                progress: bool = True) -> dict:
    cfg, out = absolute_paths(config), Path(out)
    RunFolder(out).begin()
    data = load_caption_data(cfg, out, progress)
    gen = seed_everything(cfg.train.seed)
    tr, va, te = data.rows("train"), data.rows("val"), data.rows("test")
    if len(tr) < 2 or len(te) < 1:
        raise PolymodalError(f"{cfg.manifest}: captioning needs train and test rows "
                             f"(got {len(tr)} train, {len(te)} test)")
    if not len(va):
        va = tr[:min(len(tr), 200)]
    vocab = build_vocab([c for i in tr for c in data.captions[i]], cfg.vocab_size, cfg.min_count)
    index, rerank, extra = None, None, {}
    if cfg.decoder == "rag":
        from polymodal.tasks.caption.rag_fit import fit_rag

        model, index, res, hyps, extra, rerank = fit_rag(cfg, data, vocab, tr, va, te, out,
                                                         resume, progress, gen)
        n_pairs = sum(len(data.captions[i]) for i in tr)
    else:
        model, res, hyps, n_pairs = _fit_plain(cfg, data, vocab, tr, va, te, out, resume,
                                               progress, gen)
    refs = [data.captions[i] for i in te]
    space = _nn_space(cfg.nn_space, data.feats) if cfg.nn_space else data.feats
    nn = nearest_neighbour_captions(space[tr], [data.captions[i][0] for i in tr], space[te])
    metrics = {name: caption_metrics(h, refs) for name, h in hyps.items()
               if name != "nn-consensus"}
    metrics["nearest-neighbour"] = caption_metrics(nn, refs)
    if "nn-consensus" in hyps:
        metrics["nn-consensus"] = caption_metrics(hyps["nn-consensus"], refs)
    result = {"decoder": cfg.decoder, "metrics": metrics,
              "nn_space": cfg.nn_space or f"cosine on {data.encoder_name} image features",
              "val_cider_greedy": round(res.best_score, 4), "best_epoch": res.best_epoch,
              "epochs_run": res.epochs_run, "train_seconds": round(res.seconds, 1),
              "vocab_size": len(vocab), "n_train_images": int(len(tr)),
              "n_train_captions": n_pairs, "n_test_images": int(len(te)),
              "refs_per_test_image": round(float(np.mean([len(r) for r in refs])), 2),
              "params": int(sum(p.numel() for p in model.parameters())), **extra}
    _save(out, cfg, model, vocab, data)
    if index is not None:
        index.save(out, rerank)
    main = hyps.get(f"beam{cfg.beam}+consensus", hyps[f"beam{cfg.beam}"])
    others = {k: v for k, v in hyps.items() if k != "greedy" and v is not main}
    atomic_write_text(out / "samples.jsonl", "".join(json.dumps(
        {"id": data.ids[i], "image": data.images[i], "references": r, "greedy": hyps["greedy"][j],
         "beam": main[j], "nearest_neighbour": nn[j], **{k: v[j] for k, v in others.items()}},
        ensure_ascii=False) + "\n" for j, (i, r) in enumerate(zip(te, refs))))
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=1))
    samples_figure(out / "samples.jsonl", out / "samples.png")
    for f in ("checkpoint.pt",):
        (out / f).unlink(missing_ok=True)
    RunFolder(out).finish()
    return result


def _fit_plain(cfg: CaptionConfig, data: CaptionData, vocab: list[str], tr, va, te, out: Path,
               resume: bool, progress: bool, gen: torch.Generator):
    """GRU / prefix-Transformer decoder: ``(model, fit result, {method: test captions},
    training pairs)``."""
    index = {w: i for i, w in enumerate(vocab)}
    pairs = [(i, encode_caption(c, index, cfg.max_len)) for i in tr for c in data.captions[i]]
    model = build_captioner(_spec(cfg, data.feats.shape[1], len(vocab)))
    feats = torch.from_numpy(np.ascontiguousarray(data.feats, np.float32))
    bs = min(cfg.batch_size, len(pairs))

    def batches(epoch: int):
        perm = torch.randperm(len(pairs), generator=gen).tolist()
        for s in range(0, len(perm), bs):
            chunk = [pairs[k] for k in perm[s:s + bs]]
            toks = _pad([p[1] for p in chunk])
            yield feats[[p[0] for p in chunk]], toks[:, :-1], toks[:, 1:]

    def step(m: torch.nn.Module, batch) -> torch.Tensor:
        f, inp, tgt = batch
        return caption_loss(m(f, inp), tgt)

    val_refs = [data.captions[i] for i in va]

    def validate(m: torch.nn.Module) -> float:
        return cider_d(decode(m, data.feats[va], vocab, 1, cfg.max_len), val_refs)

    res = fit_loop(model, step, batches, validate, cfg.train.model_copy(
        update={"progress": cfg.train.progress and progress}), run_dir=out, resume=resume,
        desc=f"fit {cfg.decoder} captioner", generator=gen, threads=cfg.threads)
    model.eval()
    hyps = {"greedy": decode(model, data.feats[te], vocab, 1, cfg.max_len),
            f"beam{cfg.beam}": decode(model, data.feats[te], vocab, cfg.beam, cfg.max_len,
                                      cfg.length_penalty)}
    return model, res, hyps, len(pairs)


def _save(out: Path, cfg: CaptionConfig, model: torch.nn.Module, vocab: list[str],
          data: CaptionData) -> None:
    run = RunFolder(out)
    run.save_weights(model.state_dict())
    atomic_write_text(out / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    write_splits(out / "splits.csv", data.ids, data.splits)
    run.write_config("caption", json.loads(cfg.model_dump_json()),
                     {"image": {"name": data.encoder_name, "id": data.encoder_id}},
                     model=model.spec)


def samples_figure(samples: str | Path, out: str | Path, n: int = 8, seed: int = 0) -> Path:
    """A picture of ``n`` random test drawings with their first reference, the beam caption and
    the nearest-neighbour caption (from a run's samples.jsonl)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rows = [json.loads(x) for x in Path(samples).read_text().splitlines() if x.strip()]
    pick = np.random.default_rng(seed).permutation(len(rows))[:n]
    cols = min(4, len(pick))
    fig, axes = plt.subplots(-(-len(pick) // cols), cols, figsize=(3.2 * cols, 3.9 *
                             -(-len(pick) // cols)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, pick):
        r = rows[k]
        try:
            ax.imshow(Image.open(r["image"]).convert("RGB"))
        except OSError:
            pass
        text = [f"ref: {r['references'][0]}", f"beam: {r['beam']}",
                f"NN: {r['nearest_neighbour']}"]
        ax.set_title("\n".join(textwrap.shorten(t, 40) for t in text), fontsize=8, loc="left")
    fig.tight_layout()
    with atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, format="png", dpi=72)
    plt.close(fig)
    return Path(out)


def format_caption_metrics(res: dict) -> str:
    """Test metrics table as printed by the CLI."""
    cols = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "ROUGE-L"]
    lines = [f"{'method':<18}" + "".join(f"{c:>9}" for c in cols)]
    for name, m in res["metrics"].items():
        lines.append(f"{name:<18}" + "".join(f"{m[c]:>9.3f}" for c in cols))
    lines.append(f"{res['n_test_images']} test images, {res['refs_per_test_image']} references "
                 f"each; decoder {res['decoder']}, best epoch {res['best_epoch']}, "
                 f"{res['train_seconds']:.0f} s; baseline: {res['nn_space']}")
    return "\n".join(lines)


__all__ = ["CaptionConfig", "build_vocab", "fit_caption", "format_caption_metrics",
           "nearest_neighbour_captions"]
