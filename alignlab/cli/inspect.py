"""`alignlab inspect`: one preference pair token by token in the terminal (rich colours), for quick looks over ssh.

The numbers are alignlab.diagnostics.token_views.inspect_pair's; the colours are the report's bins
(token_views.log_ratio_bin), so the terminal and the HTML page agree.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.console import Console
from rich.style import Style
from rich.table import Table
from rich.text import Text

from alignlab.cli.options import add_data_options, check_local_file, data_spec
from alignlab.errors import ConfigError

if TYPE_CHECKING:
    from alignlab.diagnostics.token_views import PairTokens, SequenceTokens

USAGE = "alignlab inspect --model M --ref R --data FILE --index I [--top K]"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alignlab inspect", usage=USAGE,
        description="One preference pair token by token: each response token coloured by its log-ratio to the "
                    "reference (blue raised, red lowered), underlined where the forward KL is large; --top K lists "
                    "the tokens with the largest log-ratio and KL. The data options are training's.")
    p.add_argument("--model", required=True, help="policy: built-in name, directory, hub id or LoRA adapter")
    p.add_argument("--ref", required=True, help="reference model")
    p.add_argument("--data", required=True, help="preference pairs: file, directory or datasets name")
    p.add_argument("--index", type=int, required=True, help="the pair's record index (as in `alignlab score`)")
    p.add_argument("--top", type=int, default=0, metavar="K", help="list the K tokens with the largest |log-ratio| "
                   "and the K with the largest KL")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the model's)")
    add_data_options(p)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--bf16", action="store_true", help="load the models in bfloat16")
    return p


def _sequence_text(seq: SequenceTokens, scale: float, kl_scale: float) -> Text:
    from alignlab.diagnostics.token_views import bin_rgb, log_ratio_bin

    text = Text()
    text.append("".join(seq.tokens[:seq.prompt_length]), style="grey50")
    for t in range(seq.prompt_length, len(seq.tokens)):
        ratio, kl = seq.log_ratio[t], seq.kl_forward[t]
        if ratio is None:
            text.append(seq.tokens[t])
            continue
        r, g, b = bin_rgb(log_ratio_bin(ratio, scale))
        text.append(seq.tokens[t], style=Style(color="black", bgcolor=f"rgb({r},{g},{b})",
                                               underline=kl is not None and kl >= kl_scale / 2))
    return text


def render(console: Console, pair: PairTokens, top: int) -> None:
    """Print the pair: a header, the colour legend, the chosen and rejected sequences, and the --top tables."""
    from alignlab.diagnostics.token_views import BINS, bin_rgb, color_scale, top_tokens

    values = [v for side in (pair.chosen, pair.rejected) for v in side.log_ratio]
    scale = color_scale(values)
    kl_scale = color_scale(v for side in (pair.chosen, pair.rejected) for v in side.kl_forward)
    console.print(f"[bold]pair {pair.index}[/bold]: log-ratio margin {pair.margin:+.3f} nats "
                  f"(chosen {pair.chosen.total('log_ratio'):+.3f}, rejected {pair.rejected.total('log_ratio'):+.3f})")
    legend = Text(f"{-scale:.3g} ")
    for b in range(-BINS, BINS + 1, 2):
        r, g, bl = bin_rgb(b)
        legend.append("  ", style=Style(bgcolor=f"rgb({r},{g},{bl})"))
    legend.append(f" +{scale:.3g} nats log-ratio; underlined: forward KL >= {kl_scale / 2:.3g} nats; prompt grey")
    console.print(legend)
    for name, seq in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        console.print(f"\n[bold]{name}[/bold]: log-ratio {seq.total('log_ratio'):+.3f}, "
                      f"KL(ref||policy) {seq.total('kl_forward'):.3f}, {len(seq.tokens) - seq.prompt_length} tokens")
        console.print(_sequence_text(seq, scale, kl_scale))
    if top:
        for by, title in (("log_ratio", "largest |log-ratio|"), ("kl_forward", "largest forward KL")):
            table = Table(title=f"pair {pair.index}: {top} tokens with the {title}")
            for column in ("side", "position", "token", "log-ratio", "KL(ref||policy)", "log p", "log p_ref"):
                table.add_column(column, justify="left" if column in ("side", "token") else "right")
            for row in top_tokens(pair, top, by=by):
                table.add_row(row.side, str(row.position), repr(row.token), f"{row.log_ratio:+.4f}",
                              f"{row.kl_forward:.4f}", f"{row.logp:.3f}", f"{row.ref_logp:.3f}")
            console.print(table)


def main(argv: list[str]) -> int:
    """`alignlab inspect`: check the options, score the pair token by token, print it; return 0."""
    args = _parser().parse_args(argv)
    if args.index < 0:
        raise ConfigError(f"--index must be a record index >= 0; got {args.index}")
    if args.top < 0:
        raise ConfigError(f"--top must be >= 0; got {args.top}")
    spec = data_spec(args)
    check_local_file(args.data)
    # torch and transformers load only now, after every check that needs neither
    from alignlab.diagnostics.token_views import inspect_pair

    pair = inspect_pair(args.model, args.ref, args.data, args.index, tokenizer=args.tokenizer, spec=spec,
                        device=args.device, bf16=args.bf16)
    render(Console(highlight=False), pair, args.top)
    return 0


__all__ = ["main", "render"]
