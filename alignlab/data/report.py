"""DataReport: what loading and tokenizing a dataset kept, dropped, truncated and flagged."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataReport:
    """Counts from one load_preference_data / load_sft_data call.

    n_records counts source records read (after ``limit``); n_kept counts output examples (a ranking record
    expands into several pairs). Dropped: n_dropped_empty (a response with no trained token, in the data or
    after truncation), n_dropped_truncation (``response_truncation="drop_example"``). n_prompt_truncated and
    n_response_truncated count kept examples whose prompt / response(s) were cut (a cut response loses its
    EOS: ``eos_dropped``). n_boundary_merges counts kept examples where encoding the joint text would merge
    tokens across a prompt/response or turn boundary (alignlab keeps the separate encoding; see tokenize.py).
    n_identical_pairs counts pairs with chosen == rejected (formats.py says what is identical), found in the
    data; n_dropped_identical counts those of them dropped before tokenization (``drop_identical_pairs``), so
    n_identical_pairs - n_dropped_identical of them are among the kept examples.
    """

    format: str = ""
    n_records: int = 0
    n_kept: int = 0
    n_dropped_empty: int = 0
    n_dropped_truncation: int = 0
    n_prompt_truncated: int = 0
    n_response_truncated: int = 0
    n_boundary_merges: int = 0
    n_identical_pairs: int = 0
    n_dropped_identical: int = 0
    warnings: list[str] = field(default_factory=list)

    def changes(self) -> str:
        """One line saying what was dropped or cut, or "" when every record was kept whole."""
        parts = [f"{n} {what}" for n, what in (
            (self.n_dropped_identical, "dropped as identical chosen/rejected (drop_identical_pairs)"),
            (self.n_dropped_truncation, "dropped as too long (response_truncation: drop_example)"),
            (self.n_dropped_empty, "dropped with no response token left"),
            (self.n_prompt_truncated, "with the prompt cut to max_prompt_length"),
            (self.n_response_truncated, "with responses cut at max_length (EOS lost)"),
        ) if n]
        if not parts:
            return ""
        return f"data: {self.n_records} records -> {self.n_kept} examples; " + ", ".join(parts)

    def __str__(self) -> str:
        lines = [
            f"data: {self.n_records} records ({self.format}) -> {self.n_kept} examples kept",
            (
                f"  dropped: {self.n_dropped_empty} empty response, {self.n_dropped_truncation} too long, "
                f"{self.n_dropped_identical} identical chosen/rejected"
            ),
            (
                f"  truncated: {self.n_prompt_truncated} prompts, "
                f"{self.n_response_truncated} responses (EOS dropped)"
            ),
            (
                f"  boundary merges (separate encoding kept): {self.n_boundary_merges}; "
                f"identical pairs kept: {self.n_identical_pairs - self.n_dropped_identical}"
            ),
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)
