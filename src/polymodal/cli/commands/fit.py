"""Commands that train and evaluate: ``fit retrieval|classify|caption|generate``, ``compare``,
``quickstart``, ``eval``, ``robustness``, ``explain``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from polymodal.cli.commands.common import auto_report, plot


def is_main() -> bool:
    from polymodal.train.dist import is_main

    return is_main()


def check_mlflow(a: argparse.Namespace) -> None:
    """``--mlflow DIR``: fail before the fit when MLflow is missing."""
    if getattr(a, "mlflow", None):
        from polymodal.tasks.tracking import need_mlflow

        need_mlflow()


def log_mlflow(a: argparse.Namespace) -> None:
    if getattr(a, "mlflow", None):
        from polymodal.tasks.tracking import log_run

        print(f"mlflow: run {log_run(a.out, a.mlflow)} logged to {a.mlflow}")


def cmd_fit_retrieval(a: argparse.Namespace) -> int:
    from polymodal.cli.options import config_from_args
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.tasks.retrieval.quickstart import format_table

    cfg = config_from_args(RetrievalConfig, a)
    check_mlflow(a)
    res = fit_retrieval(cfg, a.out, resume=a.resume, progress=not a.quiet and is_main())
    if not is_main():  # torchrun: rank 0 alone prints and writes
        return 0
    log_mlflow(a)
    if res.get("selection"):
        from polymodal.tasks.retrieval.select import format_selection

        print(format_selection(res["selection"]))
    chosen = (res.get("selection") or {}).get("chosen")
    print(format_table(res, f"auto:{chosen}" if chosen else res.get("method") or cfg.loss))
    if res.get("via_text"):  # --bridge asr through text: the same heads with true captions
        print(format_table({"metrics": res["via_text"]}, "via-text"))
    print(f"run folder: {a.out}")
    auto_report(a)
    return 0


def _classifier_config(a: argparse.Namespace):
    """ClassifierConfig from ``--config`` YAML overridden by the command-line options."""
    from polymodal.cli.options import config_from_args
    from polymodal.tasks.classify.config import ClassifierConfig

    return config_from_args(ClassifierConfig, a)


def cmd_fit_classify(a: argparse.Namespace) -> int:
    from polymodal.tasks.classify.fit import fit_classifier

    cfg = _classifier_config(a)
    check_mlflow(a)
    res = fit_classifier(cfg, a.out, progress=not a.quiet and is_main(), resume=a.resume)
    if not is_main():  # torchrun: rank 0 alone prints and writes
        return 0
    log_mlflow(a)
    m = res["metrics"]
    print(f"{res['method']} ({res['problem']}, target {res['target']}): test " +
          "  ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float)))
    print(f"train {res['train_seconds']:.1f} s, {res['params']} parameters, peak memory "
          f"{res['peak_mem_mb']:.1f} MiB; rows train/val/test {res['n_train']}/{res['n_val']}/"
          f"{res['n_test']}, skipped {res['skipped_rows']}")
    if res.get("test_by_group"):
        from polymodal.tasks.classify.groups import format_groups

        print("test by group:\n" + format_groups(res["test_by_group"]))
    print(f"run folder: {a.out}")
    auto_report(a)
    return 0


# transcribe): commands and their parser block
def _fit_generation(a: argparse.Namespace, task: str) -> int:
    """``fit caption`` / ``fit generate``: config from the options, fit, print the metrics."""
    import importlib

    from polymodal.cli.options import config_from_args

    cls, fit, fmt = {"caption": ("CaptionConfig", "fit_caption", "format_caption_metrics"),
                     "generate": ("GenerateConfig", "fit_generate",
                                  "format_generate_metrics")}[task]
    config = getattr(importlib.import_module(f"polymodal.tasks.{task}.config"), cls)
    module = importlib.import_module(f"polymodal.tasks.{task}.fit")
    res = getattr(module, fit)(config_from_args(config, a), a.out, resume=a.resume,
                               progress=not a.quiet)
    print(getattr(module, fmt)(res))
    print(f"run folder: {a.out}")
    return 0


def cmd_fit_caption(a: argparse.Namespace) -> int:
    return _fit_generation(a, "caption")


def cmd_fit_generate(a: argparse.Namespace) -> int:
    return _fit_generation(a, "generate")


def cmd_compare(a: argparse.Namespace) -> int:
    from polymodal.tasks.classify.compare import compare_methods, format_summary

    res = compare_methods(_classifier_config(a), a.out, methods=a.fusions, seeds=a.seeds,
                          progress=not a.quiet)
    print(format_summary(res["summary"], res["metrics"]))
    print(f"results: {Path(a.out) / 'results.csv'}  summary: {Path(a.out) / 'summary.csv'}  "
          f"report: {Path(a.out) / 'report.html'}")
    auto_report(a)
    return 0


def cmd_quickstart(a: argparse.Namespace) -> int:
    from polymodal.tasks.retrieval.quickstart import quickstart

    quickstart(a.out, epochs=a.epochs, progress=not a.quiet)
    auto_report(a, label="report (plots, example queries)")
    print(f"try: polymodal search {a.out} --text \"a blue bird\" -k 5")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from polymodal.tasks.retrieval.predict import eval_run, load_run

    if a.zero_shot:
        return _eval_zero_shot(a)
    res = eval_run(load_run(a.run), a.manifest, None if a.split == "all" else a.split,
                   progress=not a.quiet)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        for d, m in res.items():
            print(f"{d:<14} " + "  ".join(f"{k}={v:.3f}" for k, v in m.items()))
    return 0


def _eval_zero_shot(a: argparse.Namespace) -> int:
    from polymodal.tasks.retrieval.predict import load_run
    from polymodal.tasks.retrieval.zeroshot import zero_shot_run

    res = zero_shot_run(load_run(a.run), a.zero_shot, a.prompt, a.manifest,
                        None if a.split == "all" else a.split, progress=not a.quiet)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"zero-shot {res['column']} ({res['split']}): accuracy {res['accuracy']:.3f} on "
              f"{res['n_items']} items, {res['n_classes']} classes (chance {res['chance']:.3f}, "
              f"majority class {res['majority']:.3f}); prompt e.g. '{res['prompts'][0]}'")
    return 0


def cmd_robustness(a: argparse.Namespace) -> int:
    from polymodal.metrics.robustness import parse_levels
    from polymodal.tasks.classify.analysis import format_robustness, robustness

    rows = robustness(a.path, parse_levels(a.missing, "missing"), parse_levels(a.noise, "noise"),
                      out=a.out, split=a.split, seed=a.seed, repeats=a.repeats,
                      progress=not a.quiet)
    print(format_robustness(rows))
    dest = Path(a.out or a.path)
    from polymodal.report.plots import robustness_png

    plot(lambda: robustness_png(dest, rows))
    if (dest / "compare.json").is_file():  # the compare report shows the new curves
        auto_report(a, dest)
    print(f"curves: {dest / 'robustness.csv'}  plot: {dest / 'robustness.png'}")
    return 0


def cmd_explain(a: argparse.Namespace) -> int:
    from polymodal.tasks.classify.analysis import explain_dataset, explain_row, format_explanation

    if a.row is not None:
        res = explain_row(a.run, a.row)
    else:
        res = explain_dataset(a.run, split=a.split, repeats=a.repeats, seed=a.seed)
    print(json.dumps(res, indent=1, default=str) if a.json else format_explanation(res))
    if a.row is None:
        from polymodal.report.plots import importance_png

        plot(lambda: importance_png(a.run, res))
        print(f"written: {Path(a.run) / 'importance.json'}  {Path(a.run) / 'importance.png'}")
    return 0
