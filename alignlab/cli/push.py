"""`alignlab push`: upload a run's final/ (with its model card) to a Hugging Face Hub model repository.

The work is alignlab.train.model_card.push_final, which wraps huggingface_hub (create_repo, upload_folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alignlab.errors import ConfigError

USAGE = "alignlab push RUN_DIR REPO_ID [--private] [--message TEXT]"


def main(argv: list[str]) -> int:
    """`alignlab push`: check the run and the repository id, push, print the commit; return 0."""
    p = argparse.ArgumentParser(
        prog="alignlab push", usage=USAGE,
        description="Upload RUN_DIR/final (model, tokenizer, model card README.md) to the Hub repository REPO_ID, "
                    "creating it if needed. Needs the network and a token (`hf auth login` or HF_TOKEN).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished training run (with final/)")
    p.add_argument("repo_id", metavar="REPO_ID", help="Hub model repository, owner/name")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--message", default=None, help="commit message")
    args = p.parse_args(argv)
    if not (Path(args.run_dir) / "final").is_dir():
        raise ConfigError(f"run directory '{args.run_dir}' has no final/ (push uploads a finished run's model)")
    from alignlab.train.model_card import check_repo_id, push_final

    check_repo_id(args.repo_id)
    result = push_final(args.run_dir, args.repo_id, private=args.private, commit_message=args.message)
    if result.wrote_card:
        print(f"wrote {Path(args.run_dir) / 'final' / 'README.md'} (the run had no model card)")
    print(f"pushed {Path(args.run_dir) / 'final'} to {result.repo_url}" +
          (f" ({result.commit_url})" if result.commit_url else ""))
    return 0


__all__ = ["main"]
