"""The HTML view of a report's JSON (report.build_report): one self-contained page.

Everything the page needs is inside it: CSS in a <style> element, figures as SVG data URIs drawn with
matplotlib from the JSON's numbers (text as text in the reader's sans-serif font), no script, no external font,
image or link, so it opens offline, in an e-mail or in a paper review. A token's value is in its title (shown on
hover); its background is its log-ratio bin (token_views.log_ratio_bin) and its underline its forward-KL bin.
The HTML is a Jinja2 template (autoescaped); the per-token spans are built in Python, escaped, because a long
response has thousands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import jinja2
from markupsafe import Markup
from matplotlib.figure import Figure

from alignlab.diagnostics.diagnose import flip_rows_figure
from alignlab.diagnostics.plots import figure_data_uri, loss_vs_ref_logratio_figure
from alignlab.diagnostics.token_views import BINS, bin_rgb, log_ratio_bin

KL_BINS = 4
_SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def kl_bin(value: float, scale: float) -> int:
    """The underline bin of a forward KL, 0..KL_BINS (0: no underline)."""
    if not math.isfinite(value):
        return KL_BINS
    return math.ceil(max(0.0, min(1.0, value / scale)) * KL_BINS - 1e-9) if value > 0 else 0


def _css() -> str:
    bins = "\n".join(f".b{b + BINS}{{background:rgb{bin_rgb(b)}}}" for b in range(-BINS, BINS + 1))
    kls = "\n".join(f".k{k}{{border-bottom:3px solid rgba(120,72,0,{k / KL_BINS:.2f})}}" for k in range(KL_BINS + 1))
    return _STYLE + bins + "\n" + kls


def curve_figure(title: str, keys: Sequence[str], series: Mapping[str, Any]) -> Figure:
    """One CURVE_GROUPS figure: each key's train series as a line, its eval series dashed with markers."""
    fig = Figure(figsize=(5.6, 3.1), dpi=100)
    ax = fig.add_subplot()
    for color, key in zip(_SERIES_COLORS * 4, keys):
        train, held_out = series[key].get("train"), series[key].get("eval")
        if train:
            ax.plot(train["steps"], train["values"], color=color, linewidth=1.2, label=f"train {key}")
        if held_out:
            ax.plot(held_out["steps"], held_out["values"], color=color, linestyle="--", marker="o", markersize=3.5,
                    linewidth=1.0, label=f"eval {key}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    return fig


def _figures(data: Mapping[str, Any]) -> dict[str, Any]:
    curves = data.get("curves") or {"groups": [], "series": {}}
    out: dict[str, Any] = {"curves": [(g["title"], figure_data_uri(curve_figure(g["title"], g["keys"], curves["series"])))
                                      for g in curves["groups"]], "flips": None, "theorem": None}
    flips = data.get("flips")
    if flips and flips.get("rows"):
        out["flips"] = figure_data_uri(flip_rows_figure(flips["rows"], "Flip groups over training"))
    pairs = data.get("pairs")
    if pairs and pairs.get("per_pair"):
        rows = pairs["per_pair"]
        out["theorem"] = figure_data_uri(loss_vs_ref_logratio_figure(
            [r["ref_logratio"] for r in rows], [r["dpo_loss"] for r in rows], [r["correct"] for r in rows],
            beta=pairs["beta"], title=f"DPO loss vs reference log-ratio, final policy ({len(rows)} pairs)"))
    return out


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m {s:02d}s" if hours else f"{m}m {s:02d}s"


def token_spans(seq: Mapping[str, Any], scale: float, kl_scale: float) -> Markup:
    """The response tokens of one sequence as spans (class b<bin> k<bin>, value in the title), after the prompt,
    which is one greyed span."""
    start = seq["prompt_length"]
    parts = [f'<span class="prompt">{escape("".join(seq["tokens"][:start]))}</span>']
    for t in range(start, len(seq["tokens"])):
        text = escape(seq["tokens"][t])
        ratio = seq["log_ratio"][t]
        if ratio is None:
            parts.append(f'<span class="t">{text}</span>')
            continue
        kl = seq["kl_forward"][t]
        title = (f"{seq['tokens'][t]!r}: log-ratio {ratio:+.4f} nats, KL(ref||policy) {kl:.4f}, "
                 f"log p {seq['logps'][t]:.3f}, log p_ref {seq['ref_logps'][t]:.3f}")
        parts.append(f'<span class="t b{log_ratio_bin(ratio, scale) + BINS} k{kl_bin(kl, kl_scale)}" '
                     f'title="{escape(title)}">{text}</span>')
    return Markup("".join(parts))


def _legend(scale: float) -> Markup:
    cells = "".join(f'<span class="sw b{b + BINS}" title="{b * scale / BINS:+.3f} nats">&nbsp;</span>'
                    for b in range(-BINS, BINS + 1))
    return Markup(f"<span>{-scale:.3g}</span> {cells} <span>+{scale:.3g} nats</span>")


def render_report_html(data: Mapping[str, Any]) -> str:
    """The page of a report's JSON (build_report's payload)."""
    from alignlab.diagnostics.report import SECTIONS

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    env.filters["duration"] = _duration
    scale, kl_scale = data.get("color_scale") or 1.0, data.get("kl_scale") or 1.0
    views = [{**view, "chosen_html": token_spans(view["chosen"], scale, kl_scale),
              "rejected_html": token_spans(view["rejected"], scale, kl_scale),
              "prompt_text": "".join(view["chosen"]["tokens"][:view["chosen"]["prompt_length"]]),
              "sums": {side: {k: sum(v for v in view[side][k] if v is not None) for k in ("log_ratio", "kl_forward")}
                       for side in ("chosen", "rejected")}}
             for view in data.get("token_views") or []]
    import yaml

    return env.from_string(_TEMPLATE).render(
        d=data, c=data["config"], sections=SECTIONS, figures=_figures(data), views=views, css=Markup(_css()),
        legend=_legend(scale), kl_scale=kl_scale, full_config=yaml.safe_dump(data["config"]["full"], sort_keys=False),
    )


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1280px;padding:0 1.5rem 3rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem;margin:1.2rem 0 .2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
h3{margin:1.4rem 0 .4rem;font-size:1.05rem}nav a{margin-right:1rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.9rem}td,th{border:1px solid #ddd;padding:.2rem .5rem;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:.6rem}
figure{margin:0}figure img{width:100%;height:auto;border:1px solid #eee}.wide img{max-width:980px}
.note{color:#555;font-style:italic}.muted{color:#666;font-size:.9rem}
.pair{border:1px solid #ddd;border-radius:6px;padding:.6rem .9rem;margin:1rem 0}
.sides{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
.seq{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem;white-space:pre-wrap;
word-break:break-word;line-height:1.9}
.prompt{color:#9a9a9a}.t{border-radius:2px}.sw{display:inline-block;min-width:1.1em}
details pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:.8rem}
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>alignlab report: {{ d.name }}</title>
<style>{{ css }}</style>
</head>
<body>
<h1>alignlab report: {{ d.name }}</h1>
<p class="muted">{{ c.method }} from {{ c.model }}; final model {{ d.policy_label or "none" }};
reference {{ d.reference }}; written {{ d.created }}; run directory {{ d.run }}</p>
<nav>{% for s in sections %}<a href="#s{{ loop.index }}">{{ s }}</a>{% endfor %}</nav>
{% if d.notes %}<ul class="note">{% for n in d.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}

<h2 id="s1">{{ sections[0] }}</h2>
<div class="grid"><div>
<table>
<tr><th colspan="2">method</th></tr>
<tr><td>method</td><td>{{ c.method }}{% if c.reference_free %} (reference-free){% endif %}</td></tr>
{% for k, v in c.hyper_parameters.items() %}<tr><td>{{ k }}</td><td class="num">{{ v|fmt }}</td></tr>{% endfor %}
<tr><th colspan="2">model</th></tr>
<tr><td>initial model</td><td>{{ c.model }}</td></tr>
<tr><td>reference</td><td>{{ c.ref_model or ("initial model" if not c.reference_free else "none in training") }}
 (report: {{ d.reference }})</td></tr>
<tr><td>dtype / mixed precision</td><td>{{ c.dtype }} / {{ c.mixed_precision }}</td></tr>
<tr><td>LoRA</td><td>{{ "r %s, alpha %s"|format(c.lora.r, c.lora.alpha) if c.lora else "no" }}</td></tr>
<tr><th colspan="2">data</th></tr>
<tr><td>training data</td><td>{{ c.data.train_data }} (split {{ c.data.train_split }})</td></tr>
<tr><td>held-out data</td><td>{{ c.data.eval_data or ("%s of the training data"|format(c.data.eval_fraction)) }}</td></tr>
<tr><td>fingerprint</td><td>{{ c.data.fingerprint or "not recorded (runs write it to final/README.md)" }}</td></tr>
<tr><td>max length / prompt</td><td>{{ c.data.max_length }} / {{ c.data.max_prompt_length }}</td></tr>
</table>
</div><div>
<table>
<tr><th colspan="2">optimisation</th></tr>
{% for k, v in c.optimizer.items() %}<tr><td>{{ k }}</td><td class="num">{{ v|fmt }}</td></tr>{% endfor %}
<tr><td>seed</td><td class="num">{{ c.seed }}</td></tr>
<tr><th colspan="2">timing</th></tr>
<tr><td>wall time (file times)</td><td class="num">{{ c.timing.duration_s|duration }}</td></tr>
<tr><td>steps</td><td class="num">{{ c.timing.steps|fmt }}</td></tr>
<tr><td>epochs</td><td class="num">{{ c.timing.epochs|fmt }}</td></tr>
<tr><td>tokens/s (median step)</td><td class="num">{{ c.timing.tokens_per_s|fmt }}</td></tr>
</table>
<table>
<tr><th>final metric</th><th>value</th></tr>
{% for k, v in c.final_metrics.items() if k.startswith("eval/") or k == "loss" %}
<tr><td>{{ k }}</td><td class="num">{{ v|fmt }}</td></tr>
{% endfor %}
</table>
</div></div>
<details><summary>full config (config.yaml)</summary><pre>{{ full_config }}</pre></details>

<h2 id="s2">{{ sections[1] }}</h2>
{% if figures.curves %}
<p class="muted">Solid: training steps; dashed with markers: held-out evaluations.</p>
<div class="grid">
{% for title, uri in figures.curves %}<figure><img src="{{ uri }}" alt="{{ title }}"></figure>
{% endfor %}
</div>
{% else %}<p class="note">No metric of the known list was logged.</p>{% endif %}

<h2 id="s3">{{ sections[2] }}</h2>
{% if d.pairs %}
{% set s = d.pairs.summary %}
<p class="muted">{{ d.pairs.n_pairs }} pairs of {{ d.pairs.data }} (seeded subset, seed {{ d.pairs.subset_seed }}),
final model against the reference, β = {{ d.pairs.beta|fmt }}.</p>
<table>
<tr><th>measure</th><th>reference</th><th>final model</th></tr>
<tr><td>ranking accuracy R (policy alone)</td><td class="num">{{ s.ref_ranking_accuracy.raw|fmt }}</td>
<td class="num">{{ s.ranking_accuracy.raw|fmt }}</td></tr>
<tr><td>length-normalised R̃</td><td class="num">{{ s.ref_ranking_accuracy.length_normalized|fmt }}</td>
<td class="num">{{ s.ranking_accuracy.length_normalized|fmt }}</td></tr>
<tr><td>reward accuracy</td><td>—</td><td class="num">{{ s.reward_accuracy|fmt }}</td></tr>
<tr><td>mean DPO loss</td><td class="num">{{ 0.6931471805599453|fmt }}</td><td class="num">{{ s.mean_dpo_loss|fmt }}</td></tr>
<tr><td>pairs the reference ranks wrongly, flipped</td><td>—</td>
<td class="num">{{ s.flip_groups.flipped_fraction|fmt if s.flip_groups else "—" }}</td></tr>
</table>
{% else %}<p class="note">No pairs were scored (see the notes above).</p>{% endif %}
{% if figures.flips %}
<h3>Flip groups over training</h3>
<p class="muted">{{ d.flips.source }}; reference: {{ d.flips.reference }}.</p>
<figure class="wide"><img src="{{ figures.flips }}" alt="flip groups over training"></figure>
{% else %}<p class="note">No flip groups: the run tracked none and has no checkpoints to score.</p>{% endif %}
{% if figures.theorem %}
<h3>Loss against the reference log-ratio (Theorem 4.1)</h3>
<p class="muted">A pair is ranked correctly exactly when its DPO loss lies below f(c) = softplus(−βc).</p>
<figure class="wide"><img src="{{ figures.theorem }}" alt="DPO loss vs reference log-ratio"></figure>
{% endif %}

<h2 id="s4">{{ sections[3] }}</h2>
{% if views %}
<p class="muted">Each response token is coloured by its log-ratio to the reference, log π(y<sub>t</sub>) − log
π<sub>ref</sub>(y<sub>t</sub>) (blue: raised, red: lowered) and underlined by the forward KL(π<sub>ref</sub> ‖ π) of
the next-token distributions at its position (darker: larger; full at {{ kl_scale|fmt }} nats); hover a token for
its values. The prompt is grey.</p>
<p>{{ legend }}</p>
{% for v in views %}
<div class="pair">
<h3>Pair {{ v.index }}: {{ v.why }} (log-ratio margin {{ "%+.3f"|format(v.margin) }} nats)</h3>
<div class="sides">
{% for side in ("chosen", "rejected") %}
<div><h4>{{ side }}: log-ratio {{ "%+.3f"|format(v.sums[side].log_ratio) }}, KL {{ "%.3f"|format(v.sums[side].kl_forward) }}
nats</h4><div class="seq">{{ v[side ~ "_html"] }}</div></div>
{% endfor %}
</div></div>
{% endfor %}
{% else %}<p class="note">No per-token views (see the notes above).</p>{% endif %}

<h2 id="s5">{{ sections[4] }}</h2>
{% if d.generations %}
{% set j = d.generation_judge %}
{% if j %}<p>Judged by <code>{{ j.judge }}</code>: the final model's samples win against the reference's at
{{ j.win_rate|fmt }} ({{ (100 * j.confidence)|round|int }}% bootstrap interval {{ j.ci_low|fmt }}–{{ j.ci_high|fmt }}){% if j.kind == "reward" %};
mean reward {{ j.mean_policy|fmt }} (final model) against {{ j.mean_reference|fmt }} (reference){% endif %}.</p>{% endif %}
<table>
<tr><th>prompt</th><th>final model (log p, KL(ref‖π) over its tokens)</th><th>reference</th>
{% if j %}<th>final model wins</th>{% endif %}</tr>
{% for g in d.generations %}
<tr><td>{{ g.prompt }}</td><td>{{ g.policy.completion }}<br><span class="muted">log p {{ g.policy.logp|fmt }},
KL {{ g.policy.kl_forward|fmt }}, {{ g.policy.num_tokens }} tokens{% if j and j.kind == "reward" %},
judge {{ g.policy.judge_score|fmt }}{% endif %}</span></td>
<td>{{ g.reference.completion }}<br><span class="muted">log p {{ g.reference.logp|fmt }},
{{ g.reference.num_tokens }} tokens{% if j and j.kind == "reward" %}, judge {{ g.reference.judge_score|fmt }}{% endif %}</span></td>
{% if j %}<td>{{ g.judge_preference|fmt }}</td>{% endif %}</tr>
{% endfor %}
</table>
{% else %}<p class="note">No samples: pass --generate N to sample N prompts from the final model and the reference.</p>{% endif %}
<p class="muted">Written by alignlab report; the numbers are in the JSON beside this page.</p>
</body>
</html>
"""

__all__ = ["KL_BINS", "curve_figure", "kl_bin", "render_report_html", "token_spans"]
