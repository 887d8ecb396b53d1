"""Training throughput of a student (texts/s) on fixed texts, and the quality it reaches: before/after comparisons.

    python benchmarks/students/train_speed.py prepare --out DIR      # fixed texts: corpus texts + pseudo-queries
    python benchmarks/students/train_speed.py measure --texts DIR/texts.json --label NAME [--set key=value ...]
    python benchmarks/students/train_speed.py table DIR/results.jsonl

`measure` uses only APIs that every version of the project has had since the distillation split
(`compute_teacher_targets`, `build_student`, `train_student`, `mean_cosine`), so the same command can run against an
older checkout (`PYTHONPATH=/path/to/old/tree`) to give the "before" row on the same texts and teacher targets. It
appends one JSON line to DIR/results.jsonl and prints it. Training time excludes loading and the teacher's targets
(cached per text); quality is, per held-out part (corpus texts, pseudo-queries, SciFact train queries), the mean
cosine to the teacher and recall@10 vs the teacher over the teacher's SciFact document vectors; the trained model's
single-text encode p50 (torch fp32, 64 held-out pseudo-queries one at a time) compares capacities.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import platform
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np


def prepare(out: Path, corpus_texts: int, pseudo: int, held_out: int, seed: int) -> None:
    """Fixed texts: corpus texts + pseudo-queries to train on; held out: corpus texts, pseudo-queries and every
    SciFact *train* query (real queries, never trained on here; test queries are never read)."""
    from search.data.datasets import load_dataset
    from search.data.pseudo_queries import pseudo_queries
    from search.data.training_texts import train_query_texts, training_texts

    dataset = load_dataset("scifact")
    queries = set(train_query_texts(dataset))
    texts = [
        t for t in training_texts(dataset, max_texts=corpus_texts + held_out + 2000, seed=seed) if t not in queries
    ]
    texts = texts[: corpus_texts + held_out]
    made = pseudo_queries(dataset, pseudo + held_out, seed=seed, exclude=texts)
    train = texts[held_out:] + made[held_out:]
    flags = [False] * (len(texts) - held_out) + [True] * (len(made) - held_out)
    order = np.random.default_rng(seed).permutation(len(train))
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "train": [train[i] for i in order],
        "query_like": [flags[i] for i in order],
        "held_out": {"corpus": texts[:held_out], "pseudo": made[:held_out], "train_queries": sorted(queries)},
        "seed": seed,
    }
    (out / "texts.json").write_text(json.dumps(payload, indent=0))
    print(f"{len(train)} training texts ({sum(flags)} pseudo-queries), held out: "
          + ", ".join(f"{k} {len(v)}" for k, v in payload["held_out"].items()))  # fmt: skip


def measure(texts_file: Path, label: str, overrides: list[str], threads: int, epochs: int) -> dict:
    import torch

    import compression
    from compression.distill import DistillConfig, build_student, compute_teacher_targets, train_student
    from compression.encoders import l2_normalise, load_encoder
    from search.data.datasets import load_dataset
    from search.embeddings import encode_corpus

    torch.set_num_threads(threads)
    data = json.loads(texts_file.read_text())
    train, held_out = data["train"], data["held_out"]
    known = {f.name: f for f in fields(DistillConfig)}
    settings: dict = {"epochs": epochs, "seed": 0}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in known:
            raise SystemExit(f"unknown DistillConfig field {key!r} in this tree: {', '.join(known)}")
        try:  # numbers, true/false, lists: JSON; anything else (a student spec) is a string
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    config = replace(DistillConfig(), **settings)
    teacher = load_encoder(config.teacher, threads=threads)
    targets, _ = compute_teacher_targets(teacher, train, config.max_seq_length, show_progress=False,
                                         precision=config.precision)  # fmt: skip
    docs = l2_normalise(encode_corpus(teacher, load_dataset("scifact").corpus, show_progress=False).vectors)
    fit = min(config.projection_fit_texts, len(train))
    student = build_student(config, targets.shape[1], train[:fit], targets[:fit])
    documents = (docs, docs) if "rank" in config.loss else None
    extra = {"query_like": data["query_like"]} if "query_like" in inspect.signature(train_student).parameters else {}
    torch.manual_seed(0)
    started = time.perf_counter()
    losses, steps, seconds = train_student(student.model, train, targets, config, show_progress=False,
                                           documents=documents, **extra)  # fmt: skip
    wall = time.perf_counter() - started
    student.model.eval()
    probe = held_out["pseudo"][:64]
    for text in probe[:4]:  # warm-up
        student.model.encode([text])
    ticks = []
    for text in probe:
        tick = time.perf_counter()
        student.model.encode([text])
        ticks.append(time.perf_counter() - tick)
    quality = {}
    for part, texts in held_out.items():
        held_targets, _ = compute_teacher_targets(teacher, texts, 512, show_progress=False, precision="fp32")
        vectors = l2_normalise(student.model.encode(texts, batch_size=64, convert_to_numpy=True))
        teacher_top = np.argsort(-(l2_normalise(held_targets) @ docs.T), axis=1)[:, :10]
        student_top = np.argsort(-(vectors @ docs.T), axis=1)[:, :10]
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(student_top, teacher_top, strict=True)])
        cosine = np.mean(np.sum(vectors * l2_normalise(held_targets), axis=1))
        quality[part] = {"texts": len(texts), "recall@10_vs_teacher": round(float(recall), 4),
                         "cosine": round(float(cosine), 4)}  # fmt: skip
    row = {
        "label": label,
        "tree": str(Path(compression.__file__).resolve().parents[1]),
        "config": {k: v for k, v in config.to_dict().items() if k in settings or k in ("loss", "batch_size")},
        "texts": len(train) * config.epochs,
        "steps": steps,
        "train_seconds": round(seconds, 2),
        "texts_per_second": round(len(train) * config.epochs / seconds, 2),
        "epoch_losses": [round(x, 5) for x in losses],
        "held_out": quality,
        "encode_ms_p50_torch": round(float(np.median(ticks)) * 1000, 3),
        "parameters": sum(p.numel() for p in student.model.parameters()),
        "threads": threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "wall_seconds": round(wall, 2),
    }
    with (texts_file.parent / "results.jsonl").open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return row


def table(results: Path) -> None:
    """Print the rows of a results.jsonl as a Markdown table (texts/s, ratio to the first row, held-out quality)."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{results} has no rows")
    parts = list(rows[0]["held_out"])
    head = ["run", "texts/s", "vs first", "train s"]
    head += [f"{part} R@10 vs teacher / cos" for part in parts] + ["encode ms (torch)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    base = rows[0]["texts_per_second"]
    for row in rows:
        cells = [row["label"], f"{row['texts_per_second']:.1f}", f"{row['texts_per_second'] / base:.2f}x",
                 f"{row['train_seconds']:.0f}"]  # fmt: skip
        cells += [f"{row['held_out'][p]['recall@10_vs_teacher']:.3f} / {row['held_out'][p]['cosine']:.3f}"
                  for p in parts]  # fmt: skip
        cells.append(f"{row['encode_ms_p50_torch']:.2f}" if "encode_ms_p50_torch" in row else "-")
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--corpus-texts", type=int, default=1024)
    p.add_argument("--pseudo-queries", type=int, default=2048)
    p.add_argument("--held-out", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("measure")
    m.add_argument("--texts", type=Path, required=True)
    m.add_argument("--label", required=True)
    m.add_argument("--set", action="append", default=[], help="DistillConfig field=value (repeat)")
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--epochs", type=int, default=1)
    t = sub.add_parser("table")
    t.add_argument("results", type=Path)
    args = parser.parse_args()
    if args.command == "table":
        table(args.results)
    elif args.command == "prepare":
        prepare(args.out, args.corpus_texts, args.pseudo_queries, args.held_out, args.seed)
    else:
        measure(args.texts, args.label, args.set, args.threads, args.epochs)


if __name__ == "__main__":
    main()
