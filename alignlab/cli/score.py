"""`alignlab score`: its parser and its one-line summary (stderr; the records go to --out)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alignlab.cli.options import add_data_options, check_local_file, data_spec
from alignlab.errors import ConfigError


def main(argv: list[str]) -> int:
    """`alignlab score`: score a data set with score_data, write the JSONL, print a one-line summary; return 0."""
    parser = argparse.ArgumentParser(
        prog="alignlab score",
        description="Per-record summed log-probs of a data set under a model (and a reference), computed as "
                    "training computes them; one JSON line per record, in input order. The data options are "
                    "training's config keys of the same names and defaults.")
    parser.add_argument("--model", required=True, help="built-in name, Hugging Face directory or id, or LoRA adapter")
    parser.add_argument("--data", required=True, help="pairs or single responses: file, directory or datasets name")
    parser.add_argument("--out", required=True, help="output JSONL (written atomically)")
    parser.add_argument("--ref", default=None, help="reference model: adds its log-probs and each sequence's KL")
    parser.add_argument("--token-ids", action="store_true",
                        help="add each sequence's input_ids and labels (-100 where not scored)")
    parser.add_argument("--batch-size", type=int, default=8, help="records per forward (a pair is two rows)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer (default: the model's)")
    add_data_options(parser, sft_turns=True, limit="score the first N records")
    parser.add_argument("--dtype", default="float32", help="weights: float32 or bfloat16")
    parser.add_argument("--mixed-precision", default="no", help="no, or bf16 (autocast, as training's key)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="tokens per tile of the vocabulary projection")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: not a file path in an existing directory")
    for flag, value in (("--batch-size", args.batch_size), ("--chunk-size", args.chunk_size),
                        ("--limit", 1 if args.limit is None else args.limit)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    spec = data_spec(args)
    check_local_file(args.data)
    # torch and transformers load only now, after every check that needs neither
    from alignlab.diagnostics.generation import write_jsonl
    from alignlab.diagnostics.sequence_scores import score_data

    records, report = score_data(
        args.model, args.data, ref=args.ref, tokenizer=args.tokenizer, spec=spec,
        dtype=args.dtype, mixed_precision=args.mixed_precision,
        device=args.device, token_ids=args.token_ids, batch_size=args.batch_size, chunk_size=args.chunk_size)
    write_jsonl(records, out)
    key = "chosen_logps" if "chosen_logps" in records[0] else "logps"
    mean = sum(r[key] for r in records) / len(records)
    dropped = report.n_dropped_empty + report.n_dropped_truncation
    print(f"{report.n_records} records ({report.format}) -> {len(records)} scored, {dropped} dropped "
          f"({report.n_dropped_empty} empty response, {report.n_dropped_truncation} too long), "
          f"{report.n_response_truncated} with a response cut at max_length; mean {key} {mean:.4f} -> {out}",
          file=sys.stderr)
    return 0


__all__ = ["main"]
