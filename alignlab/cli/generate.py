"""`alignlab generate`: its parser, the JSONL output (--out or standard output) and the one-line summary."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignlab.cli.options import add_sampling_options, check_local_file
from alignlab.data.sources import LOCAL_SUFFIXES
from alignlab.errors import ConfigError

# alignlab.diagnostics (torch, transformers) is imported once the options have been checked: a missing prompts
# file or a bad option is reported before seconds of imports.

USAGE = (
    "alignlab generate --model PATH --prompts FILE_OR_DATASET [--ref PATH] [--out FILE.jsonl] [--n 4] "
    "[--temperature 1.0] [--top-p 1.0] [--top-k 0] [--max-new-tokens 48] [--seed 0] [--batch-size 16] "
    "[--prompt-column prompt] [--split train] [--limit N] [--device DEVICE] [--dtype DTYPE]"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignlab generate",
        usage=USAGE,
        description="Sample completions for prompts and score them (log-probs, KL to --ref, entropy).",
    )
    parser.add_argument(
        "--model", required=True, help="policy: a built-in name (alignlab/tiny-llama) or a path"
    )
    parser.add_argument(
        "--prompts", required=True, help=".txt (one per line), .jsonl/.json/.parquet, or a datasets name"
    )
    parser.add_argument("--ref", default=None, help="reference model for ref_logp and the KL fields")
    parser.add_argument("--out", default=None, help="output JSONL (default: standard output)")
    add_sampling_options(parser, n=4, n_help="samples per prompt")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 is greedy")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _summary(records: Sequence[dict[str, Any]], out: str | None) -> str:
    import numpy as np

    from alignlab.diagnostics.diversity import distinct_n, mean_token_entropy

    texts = [r["completion"] for r in records]
    parts = [
        f"{len(records)} completions",
        f"mean logp {np.mean([r['logp'] for r in records]):.3f}",
        f"entropy {mean_token_entropy(records):.3f} nats/token",
        f"distinct-1 {distinct_n(texts, 1):.3f}",
        f"distinct-2 {distinct_n(texts, 2):.3f}",
    ]
    if "kl_reverse" in records[0]:
        parts.append(f"KL(pi||ref) {np.mean([r['kl_reverse'] for r in records]):.3f}")
        parts.append(f"KL(ref||pi) {np.mean([r['kl_forward'] for r in records]):.3f}")
    return ", ".join(parts) + (f" -> {out}" if out else "")


def main(argv: list[str] | None = None) -> int:
    """`alignlab generate` (USAGE): write one JSON record per completion; return 0.

    User errors raise AlignlabError; alignlab.cli.main prints them (one line, exit 2) or re-raises (--debug).
    """
    args = _parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:  # argparse made it an int
        raise ConfigError(f"--limit must be an integer >= 1, got {args.limit!r}")
    if args.out is not None:
        out = Path(args.out)
        if out.is_dir() or not out.parent.is_dir():
            raise ConfigError(f"--out {args.out}: not a writable file path (is the directory there?)")
    check_local_file(args.prompts, (*LOCAL_SUFFIXES, ".txt"))  # .txt: one prompt per line (load_prompts)
    from alignlab.diagnostics.generation import (
        check_sampling_options,
        generate_from_names,
        load_prompts,
        write_jsonl,
    )

    check_sampling_options(
        args.n, args.temperature, args.top_p, args.top_k, args.max_new_tokens, args.seed, args.batch_size
    )
    prompts = load_prompts(args.prompts, column=args.prompt_column, split=args.split, limit=args.limit)
    records = generate_from_names(
        args.model,
        prompts,
        ref=args.ref,
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
    )
    if args.out is None:
        for record in records:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        write_jsonl(records, args.out)
    print(_summary(records, args.out), file=sys.stderr)
    return 0


__all__ = ["USAGE", "main"]
