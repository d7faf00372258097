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
    n_identical_pairs counts pairs with chosen == rejected (kept, with a warning).
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
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"data: {self.n_records} records ({self.format}) -> {self.n_kept} examples kept",
            f"  dropped: {self.n_dropped_empty} empty response, {self.n_dropped_truncation} too long",
            (
                f"  truncated: {self.n_prompt_truncated} prompts, "
                f"{self.n_response_truncated} responses (EOS dropped)"
            ),
            (
                f"  boundary merges (separate encoding kept): {self.n_boundary_merges}; "
                f"identical pairs: {self.n_identical_pairs}"
            ),
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)
