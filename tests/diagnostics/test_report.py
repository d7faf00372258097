"""`alignlab report` and `alignlab inspect`: the page and its JSON on a run directory (final/ and a checkpoint of
the tiny model), the per-token values against `alignlab score --ref` and the models' own logits, the sections
without a browser (html.parser) and with one (slow, skipped without Chromium), the size of a 1,000-step run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import yaml

from alignlab.assets import load_model
from alignlab.cli import main as cli_main
from alignlab.diagnostics import report as report_module
from alignlab.diagnostics.callbacks import FLIP_KEYS
from alignlab.diagnostics.flips import GROUPS
from alignlab.diagnostics.report import (
    SECTIONS,
    ReportOptions,
    build_report,
    metric_curves,
    tracked_flip_rows,
)
from alignlab.diagnostics.token_views import BINS, log_ratio_bin
from alignlab.errors import ConfigError
from alignlab.train.config import TrainConfig
from tests.diagnostics._scoring_helpers import PAIRS, perturbed, save_model, tiny_model, write_jsonl

MAX_BYTES = 5 * 2**20


def _metrics(steps: int, *, eval_every: int, flips: bool = False) -> list[dict]:
    """metrics.jsonl records shaped like the trainer's (DPO): train lines every step, eval lines every
    eval_every steps (with FlipTracker's keys when flips)."""
    records = []
    for step in range(steps + 1):
        if step:
            records.append({"step": step, "epoch": step / 50, "loss": 0.69 * 0.99 ** step, "lr": 1e-4,
                            "grad_norm": 1.0 + (step % 7) / 10, "tokens_per_s": 100.0 + step % 5,
                            "rewards/margins": step / 100, "rewards/accuracies": min(1.0, step / 50),
                            "ranking/accuracy": 0.5, "ranking/accuracy_normalized": 0.9, "kl/chosen": step / 40,
                            "kl/rejected": step / 50, "kl/margin": step / 200})
        if step % eval_every == 0:
            line = {"step": step, "eval/loss": 0.69 * 0.99 ** step, "eval/kl/sequence": step / 45,
                    "eval/kl_reverse/chosen": step / 47, "eval/ranking/accuracy": 0.5}
            if flips:
                share = min(0.5, step / (4 * steps))
                fractions = {"correct_to_correct": 0.5, "correct_to_incorrect": 0.0,
                             "incorrect_to_correct": share, "incorrect_to_incorrect": 0.5 - share}
                for group, key in FLIP_KEYS.items():
                    line[f"flips/{key}"] = fractions[group]
                    line[f"flips/{key}_count"] = fractions[group] * 16
                line.update({"flips/n_pairs": 16.0, "flips/flipped_fraction": 2 * share,
                             "flips/ranking_accuracy": 0.5 + share, "flips/ref_ranking_accuracy": 0.5})
            records.append(line)
    return records


def make_run(root: Path, *, steps: int = 6, checkpoints: tuple[int, ...] = (3,), flips: bool = False,
             final: bool = True, eval_every: int = 3, model: torch.nn.Module | None = None) -> Path:
    """A finished DPO run of the tiny model as the trainer leaves it: config.yaml, metrics.jsonl, final/ and
    checkpoint-<step>/ (hard links to one saved model: equal weights, which is all the report needs)."""
    run = root / "run"
    run.mkdir(parents=True)
    config = TrainConfig.from_values({"method": "dpo", "model": "alignlab/tiny-llama", "run_dir": str(run),
                                      "max_length": 64, "max_prompt_length": 32})
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()), encoding="utf-8")
    write_jsonl(run / "metrics.jsonl", _metrics(steps, eval_every=eval_every, flips=flips))
    if final or checkpoints:
        saved = save_model(model if model is not None else perturbed(tiny_model(), scale=0.02, seed=3),
                           root / "saved")
        for step in checkpoints:
            shutil.copytree(saved, run / f"checkpoint-{step}", copy_function=os.link)
        if final:
            shutil.copytree(saved, run / "final", copy_function=os.link)
    return run


@pytest.fixture(scope="module")
def small_pairs(tmp_path_factory):
    lines = PAIRS.read_text(encoding="utf-8").splitlines()[:12]
    return write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", [json.loads(line) for line in lines])


@pytest.fixture(scope="module")
def built(tmp_path_factory, small_pairs):
    """One report through the CLI: a run with a checkpoint and no tracked flips (so checkpoints are scored),
    pair 3 requested, one sample per prompt."""
    root = tmp_path_factory.mktemp("report")
    run = make_run(root)
    out = root / "page" / "report.html"
    out.parent.mkdir()
    code = cli_main(["report", str(run), "--data", str(small_pairs), "--out", str(out), "--pairs", "3",
                     "--extremes", "1", "--max-pairs", "8", "--flip-pairs", "6", "--generate", "1",
                     "--max-new-tokens", "4", "--no-cache"])
    assert code == 0
    return {"run": run, "html": out, "json": out.with_suffix(".json"), "data": small_pairs}


class _Page(HTMLParser):
    """Headings (tag, text), every URL-bearing attribute, the token spans in order, tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.urls: list[str] = []
        self.spans: list[tuple[str, str | None]] = []
        self.tags: set[str] = set()
        self._heading: list[str] | None = None
        self._tag = ""

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        for name in ("src", "href", "data", "srcset", "poster"):
            if attrs.get(name):
                self.urls.append(attrs[name])
        if tag in ("h1", "h2", "h3", "h4"):
            self._heading, self._tag = [], tag
        if tag == "span" and "t" in (attrs.get("class") or "").split():
            self.spans.append((attrs["class"], attrs.get("title")))

    def handle_endtag(self, tag):
        if tag == self._tag and self._heading is not None:
            self.headings.append((tag, " ".join("".join(self._heading).split())))
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_every_section_heading_is_in_the_page(built):
    page = _parse(built["html"])
    assert [text for tag, text in page.headings if tag == "h2"] == list(SECTIONS)
    assert page.headings[0] == ("h1", f"alignlab report: {built['run'].name}")
    subheadings = [text for tag, text in page.headings if tag == "h3"]
    assert "Flip groups over training" in subheadings
    assert "Loss against the reference log-ratio (Theorem 4.1)" in subheadings
    assert sum(text.startswith("Pair ") for text in subheadings) >= 2


def test_page_is_self_contained(built):
    html = built["html"].read_text(encoding="utf-8")
    page = _parse(built["html"])
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert page.urls, "no figures"
    # figures are inline; the only links are the page's own anchors
    assert all(u.startswith(("data:image/svg+xml;base64,", "#")) for u in page.urls), page.urls
    assert "@import" not in html and "url(" not in html and "@font-face" not in html
    assert len(html.encode("utf-8")) < MAX_BYTES


def test_json_holds_what_the_page_shows(built):
    data = json.loads(built["json"].read_text(encoding="utf-8"))
    assert data["config"]["method"] == "dpo" and data["config"]["hyper_parameters"]["beta"] == 0.1
    assert data["config"]["timing"]["steps"] == 6 and data["config"]["timing"]["tokens_per_s"] is not None
    assert {"loss", "kl/chosen", "kl/margin", "lr", "grad_norm"} <= set(data["curves"]["series"])
    assert data["curves"]["series"]["loss"]["eval"]["steps"] == [0, 3, 6]
    # no tracked flips: the reference (step 0), checkpoint-3 and final/ (step 6) were scored
    assert [(r["step"], r["label"]) for r in data["flips"]["rows"]] == [(0, "reference"), (3, "checkpoint-3"),
                                                                        (6, "final")]
    assert data["flips"]["source"].startswith("2 checkpoints scored on 6 pairs")
    assert data["flips"]["scored"] == ["checkpoint-3", "final"]
    pairs = data["pairs"]
    assert pairs["n_pairs"] == 8 and len(pairs["per_pair"]) == 8
    for row in pairs["per_pair"]:
        margin = (row["chosen_logps"] - row["ref_chosen_logps"]) - (row["rejected_logps"] - row["ref_rejected_logps"])
        assert row["margin"] == pytest.approx(margin)
        assert row["dpo_loss"] == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-0.1 * margin))))
    views = data["token_views"]
    assert [v["why"] for v in views][:1] == ["requested"] and views[0]["index"] == 3
    by_margin = sorted(pairs["per_pair"], key=lambda r: r["margin"])
    shown = {v["index"]: v["why"] for v in views}
    assert shown.get(by_margin[-1]["index"]) in ("most improved", "requested")
    assert shown.get(by_margin[0]["index"]) in ("least improved", "requested")
    (sample,) = data["generations"]
    assert sample["policy"]["num_tokens"] <= 4 and sample["policy"]["kl_forward"] is not None


def test_token_values_match_alignlab_score_and_the_logits(built, tmp_path):
    """The page's per-token numbers (its JSON) add up to `alignlab score --ref` on the same pairs, each token's
    equals log_softmax of the two models' own logits (float64), and each span's colour is its value's bin."""
    data = json.loads(built["json"].read_text(encoding="utf-8"))
    scores = tmp_path / "scores.jsonl"
    final = str(built["run"] / "final")
    assert cli_main(["score", "--model", final, "--ref", "alignlab/tiny-llama", "--data", str(built["data"]),
                     "--token-ids", "--max-length", "64", "--max-prompt-length", "32", "--out", str(scores)]) == 0
    rows = {r["index"]: r for r in map(json.loads, scores.read_text(encoding="utf-8").splitlines())}
    policy, ref = load_model(final), load_model("alignlab/tiny-llama")
    for view in data["token_views"]:
        row = rows[view["index"]]
        for side in ("chosen", "rejected"):
            seq = view[side]
            assert seq["token_ids"] == row[f"{side}_input_ids"]
            scored = [t for t, label in enumerate(row[f"{side}_labels"]) if label != -100]
            assert [t for t, v in enumerate(seq["log_ratio"]) if v is not None] == scored
            assert seq["prompt_length"] == scored[0]
            total = sum(seq["log_ratio"][t] for t in scored)
            assert total == pytest.approx(row[f"{side}_logps"] - row[f"ref_{side}_logps"], abs=1e-3, rel=1e-5)
            assert sum(seq["kl_forward"][t] for t in scored) == pytest.approx(row[f"{side}_kl_forward"], rel=1e-4)
            assert sum(seq["kl_reverse"][t] for t in scored) == pytest.approx(row[f"{side}_kl_reverse"], rel=1e-4)
            ids = torch.tensor([seq["token_ids"]])
            with torch.no_grad():
                logp = torch.log_softmax(policy(input_ids=ids).logits[0].double(), -1)
                logq = torch.log_softmax(ref(input_ids=ids).logits[0].double(), -1)
            for t in scored:
                token = seq["token_ids"][t]
                want = float(logp[t - 1, token] - logq[t - 1, token])
                kl = float((logq[t - 1].exp() * (logq[t - 1] - logp[t - 1])).sum())
                assert seq["log_ratio"][t] == pytest.approx(want, abs=2e-4)
                assert seq["kl_forward"][t] == pytest.approx(kl, abs=2e-5, rel=1e-3)
    # the colours: every response token's span carries the bin of its JSON value, in order
    spans = _parse(built["html"]).spans
    values = [v for view in data["token_views"] for side in ("chosen", "rejected")
              for v in view[side]["log_ratio"][view[side]["prompt_length"]:]]
    assert len(spans) == len(values)
    for (classes, title), value in zip(spans, values):
        assert f"b{log_ratio_bin(value, data['color_scale']) + BINS}" in classes.split()
        assert f"log-ratio {value:+.4f}" in title


def test_spread_keeps_the_last_checkpoint():
    from alignlab.diagnostics.diagnose import spread

    assert spread(list(range(21)), 8) == [2, 5, 7, 10, 13, 15, 18, 20]
    assert spread([1, 2], 8) == [1, 2] and spread(list(range(5)), None) == list(range(5))


def test_log_ratio_bins_are_signed_and_saturate():
    assert log_ratio_bin(0.0, 1.0) == 0 and log_ratio_bin(0.5, 1.0) == BINS // 2
    assert log_ratio_bin(-3.0, 1.0) == -BINS and log_ratio_bin(float("inf"), 1.0) == BINS


def test_metric_curves_and_tracked_flips_from_records():
    records = _metrics(6, eval_every=3, flips=True) + [{"step": 7, "loss": None, "unknown/key": 1.0}]
    curves = metric_curves(records)
    assert curves["series"]["loss"]["train"]["steps"] == [1, 2, 3, 4, 5, 6]  # null (non-finite) is a gap
    assert "unknown/key" not in curves["series"]
    titles = [g["title"] for g in curves["groups"]]
    assert titles[0] == "Loss" and "Learning rate" in titles and "NLL per token (SFT)" not in titles
    rows = tracked_flip_rows(records)
    assert [r["step"] for r in rows] == [0, 3, 6]
    assert set(rows[-1]["fractions"]) == set(GROUPS)
    assert rows[-1]["fractions"]["incorrect_to_correct"] == pytest.approx(0.25)


def test_tracked_flips_need_no_checkpoint_scoring(tmp_path, small_pairs, monkeypatch):
    run = make_run(tmp_path, flips=True)

    def refuse(*args, **kwargs):
        raise AssertionError("checkpoints scored although the run tracked flips")

    monkeypatch.setattr(report_module, "checkpoint_flips", refuse)
    result = build_report(run, data=str(small_pairs), options=ReportOptions(max_pairs=4, extremes=1))
    assert result.html_path == run / "report.html" and result.json_path == run / "report.json"
    flips = result.data["flips"]
    assert flips["source"].startswith("tracked") and [r["step"] for r in flips["rows"]] == [0, 3, 6]
    assert "sample generations: off (pass --generate N)" in result.notes


@pytest.mark.parametrize("spec, kind", [("py:tests.judges.rules:longer", "reward"),
                                         ("py:tests.judges.rules:first_is_longer", "pairwise")])
def test_samples_carry_their_judge_scores(tmp_path, small_pairs, spec, kind):
    from tests.judges.rules import longer

    run = make_run(tmp_path, flips=True)
    result = build_report(run, data=str(small_pairs), options=ReportOptions(
        max_pairs=4, extremes=1, generate=2, max_new_tokens=6, judge=spec))
    rows, summary = result.data["generations"], result.data["generation_judge"]
    assert len(rows) == 2 and summary["judge"] == spec and summary["kind"] == kind
    for row in rows:  # the final model's sample against the reference's, whichever order the judge saw
        ours, theirs = row["policy"]["completion"], row["reference"]["completion"]
        if kind == "reward":
            for side in ("policy", "reference"):
                assert row[side]["judge_score"] == longer(row["prompt"], row[side]["completion"])
            a, b = longer(row["prompt"], ours), longer(row["prompt"], theirs)
            want = 1.0 if a > b else 0.5 if a == b else 0.0
        else:
            want = 1.0 if len(ours) > len(theirs) else 0.0 if len(ours) < len(theirs) else None
        if want is not None:
            assert row["judge_preference"] == want
    assert summary["win_rate"] == pytest.approx(sum(r["judge_preference"] for r in rows) / 2)
    assert summary["ci_low"] <= summary["win_rate"] <= summary["ci_high"]
    if kind == "reward":
        assert summary["mean_policy"] == pytest.approx(sum(r["policy"]["judge_score"] for r in rows) / 2)
    assert "Judged by" in result.html_path.read_text(encoding="utf-8")


def test_a_judge_without_samples_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="judge scores the sample generations: set generate >= 1"):
        build_report(make_run(tmp_path), options=ReportOptions(judge="py:tests.judges.rules:longer"))


def test_sections_say_why_they_are_empty(tmp_path):
    run = make_run(tmp_path, final=False, checkpoints=())
    result = build_report(run)
    assert any("no final/ or checkpoint" in note for note in result.notes)
    page = _parse(result.html_path)
    assert [text for tag, text in page.headings if tag == "h2"] == list(SECTIONS)
    assert result.data["pairs"] is None and result.data["token_views"] is None


def test_large_run_stays_under_5_mb(tmp_path, small_pairs):
    """1,000 steps, an evaluation (with tracked flips) every 50, 20 checkpoints: the page stays small. Its build
    time is measured by benchmarks/bench_report.py, not here."""
    run = make_run(tmp_path, steps=1000, eval_every=50, flips=True, checkpoints=tuple(range(50, 1001, 50)))
    result = build_report(run, data=str(small_pairs), options=ReportOptions(max_pairs=8, extremes=2))
    assert result.html_path.stat().st_size < MAX_BYTES
    assert len(result.data["curves"]["series"]["loss"]["train"]["steps"]) == 1000


_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell")


def _report_of(kind: str, built: dict, root: Path) -> Path:
    """The page of: the synthetic run (`built`), a real quickstart (SFT then TDPO2, 4 steps each; its TDPO2 stage
    reported), or a real DPO run that tracked its flips."""
    if kind == "synthetic":
        return built["html"]
    if kind == "quickstart":
        from alignlab.train.quickstart import run_quickstart

        run_quickstart(root / "qs", overrides=["max_steps=4", "tensorboard=false", "progress=false"])
        run = root / "qs" / "tdpo2"
    else:
        run = root / "dpo"
        assert cli_main(["train", "method=dpo", "max_steps=4", "eval_steps=2", "micro_batch_size=4", "limit=48",
                         "max_length=64", "max_prompt_length=32", "tensorboard=false", "progress=false",
                         f"run_dir={run}", "--track-flips", "8"]) == 0
    assert cli_main(["report", str(run), "--generate", "2", "--max-new-tokens", "6", "--max-pairs", "8",
                     "--flip-pairs", "6"]) == 0
    return run / "report.html"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["synthetic", "quickstart", "dpo-track-flips"])
def test_headless_chromium_renders_every_section(built, tmp_path, kind):
    """The page in a real browser: no console error, a screenshot that is not blank, every section heading in the
    rendered DOM. Needs a Chromium or Chrome binary on PATH (apt-get install chromium)."""
    browser = next((path for name in _BROWSERS if (path := shutil.which(name))), None)
    if browser is None:
        pytest.skip("no chromium / chrome binary on PATH (apt-get install chromium); the section headings are "
                    "checked without a browser by test_every_section_heading_is_in_the_page")
    url = _report_of(kind, built, tmp_path).resolve().as_uri()
    flags = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "page.png"
    done = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,8000", url],
                          capture_output=True, text=True, timeout=180, check=False)
    assert shot.is_file(), done.stderr[-3000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
               or "Failed to load resource" in line]
    assert not console, console
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] > 1000 and float(pixels[..., :3].std()) > 0.05, "blank screenshot"
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=False)
    rendered = [re.sub(r"<[^>]+>|\s+", " ", h).strip() for h in re.findall(r"<h2[^>]*>(.*?)</h2>", dom.stdout, re.DOTALL)]
    assert rendered == list(SECTIONS), dom.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------------------
# alignlab inspect


def test_inspect_prints_the_pair_and_its_top_tokens(built, capsys):
    data = json.loads(built["json"].read_text(encoding="utf-8"))
    view = next(v for v in data["token_views"] if v["index"] == 3)
    argv = ["inspect", "--model", str(built["run"] / "final"), "--ref", "alignlab/tiny-llama", "--data",
            str(built["data"]), "--index", "3", "--top", "3", "--max-length", "64", "--max-prompt-length", "32"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert f"pair 3: log-ratio margin {view['margin']:+.3f} nats" in out
    assert "3 tokens with the largest |log-ratio|" in out and "3 tokens with the largest forward KL" in out
    best = max((abs(v), v) for side in ("chosen", "rejected") for v in view[side]["log_ratio"] if v is not None)[1]
    assert f"{best:+.4f}" in out


def test_inspect_unknown_index_is_one_line(built, capsys):
    argv = ["inspect", "--model", str(built["run"] / "final"), "--ref", "alignlab/tiny-llama", "--data",
            str(built["data"]), "--index", "999", "--max-length", "64", "--max-prompt-length", "32"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no pair with index 999" in err[0]


def test_quickstart_root_names_its_stages(tmp_path, capsys):
    for stage in ("sft", "tdpo2"):
        (tmp_path / "qs" / stage).mkdir(parents=True)
        (tmp_path / "qs" / stage / "config.yaml").write_text("method: sft\n")
    assert cli_main(["report", str(tmp_path / "qs")]) == 2
    err = capsys.readouterr().err
    assert "holds the runs sft/, tdpo2/" in err and str(tmp_path / "qs" / "tdpo2") in err
