"""Sequence statistics from final hidden states and the lm_head weight, one [tokens, vocabulary slice] tile at a time.

The plain path materialises [B, T, V] fp32 logits (several copies once log_softmax, the reference's softmax and
the KL temporaries are alive, and again for backward). Here:

1. masked positions are dropped first: only the N scored tokens (response tokens, shifted) are kept as [N, H];
2. the vocabulary projection runs over 2-D tiles -- up to `chunk_size` tokens by a slice of the vocabulary -- and
   emits per-token log pi(y), forward KL(pi_ref || pi_theta) and, without gradient, the reference log-prob,
   entropy and reverse KL. Each slice j gives partial statistics under its own normaliser lse_j (its
   logsumexp); they combine exactly into the full row's with weights exp(lse_j - lse):
       lse = logsumexp_j lse_j,   E_p[x] = sum_j exp(lse_j - lse) E_{p_j}[x]
   (p_j the softmax within slice j). A tile's size comes from a memory budget, `chunk_bytes` (`tile_shape`): the
   [tokens, slice] temporaries alive at once in one tile -- policy and reference together, forward and backward --
   stay within it, so peak memory does not grow with the vocabulary, and a tile of a few MiB stays in the CPU's
   cache across the several elementwise passes it takes (BENCHMARKS.md: 2-D tiles);
3. backward recomputes each tile's logits and forms the logit gradient in closed form:
       grad_z = g_lp * (onehot(y) - p) + g_kl * (p - q)
   with g_lp, g_kl the per-token upstream gradients autograd hands back, so any sequence-level loss works, and
   p, q from the log-normalisers saved in forward (one in-place exp, no second tile). Tokens whose KL gradient is
   exactly zero (TDPO2's stop-gradient chosen rows) skip the reference recompute.
4. per-token outputs are summed into per-sequence statistics by row index.

Live tiles at the peak (fp32; `_live_tiles`): log-probs alone, or with the reference's log-probs (DPO): 1 -- each
tile's logsumexp is taken in its own storage; with the forward KL (TDPO): 2 (policy logits, turned into zr - z,
beside the reference's, turned into q); +1 for the reverse KL (p), +1 in backward for a soft-capped head (the
cap's derivative). A low-precision matmul output adds its own element size while it is widened.

The output head is z = softcap(scale * (h W^T + b)) with softcap(u) = c tanh(u / c) (Gemma-2/3's
final_logit_softcapping; scale is Cohere's logit_scale, 1 / Granite's logits_scaling). Both act on each tile, and
backward carries their derivative, dz/du = scale * (1 - (z / c)^2), so tiling stays exact for every head.

`plain_sequence_stats` has the same signature and computes the same statistics from full logits; it is the
reference the chunked path is tested against (values and gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from alignlab.ops.token_stats import sequence_entropy, shift_labels, token_kl, token_logps


@dataclass
class SequenceStats:
    """Per-sequence statistics over scored positions; every field is [B] except `token_logps` [B, T-1].

    `kl` is the forward sum_t KL(pi_ref || pi_theta), `reverse_kl` the reverse sum_t KL(pi_theta || pi_ref),
    `entropy` the sum of the policy's predictive entropy (nats), `log_sum_sq` the sum_t log sum_v pi(v | s_t)^2
    (WPO's weights, arXiv 2406.11827 Eq. 2); `ref_token_logps` [B, T-1] the reference's per-token log-probs;
    fields not requested are None.
    """

    logps: Tensor
    lengths: Tensor
    ref_logps: Tensor | None = None
    kl: Tensor | None = None
    reverse_kl: Tensor | None = None
    entropy: Tensor | None = None
    token_logps: Tensor | None = None
    ref_token_logps: Tensor | None = None
    log_sum_sq: Tensor | None = None


DEFAULT_CHUNK_BYTES = 8 * 2**20
"""Default memory budget of one tile's live temporaries: 8 MiB. In fp32, 1024 tokens by 2048 vocabulary entries for
log-probs (one live tile), by 1024 with the forward KL (two): small enough to stay in a CPU's cache through a
tile's elementwise passes, large enough that each tile's matmul runs at full speed."""

MIN_SLICE = 128
"""Fewest vocabulary entries per slice before a tight budget takes tokens away instead (a narrower matmul wastes
more than it saves)."""


def tile_shape(vocab_size: int, bytes_per_logit: int, chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
               max_tokens: int = 1024) -> tuple[int, int]:
    """(tokens, vocabulary entries) of one tile, so that its live temporaries fit in `chunk_bytes`.

    `bytes_per_logit` is what the computation holds per (token, vocabulary entry) at its peak: the element size of
    each tile alive at once, summed (`_live_tiles`). Whole rows when `max_tokens` of them fit; otherwise
    `max_tokens` tokens by the widest slice that fits, and below MIN_SLICE entries fewer tokens instead. Never
    more than `max_tokens` (the `chunk_size` cap) or `vocab_size`, at least 1 x 1, so a budget below one logit
    still runs (that tile then exceeds it). `chunk_bytes=None` is no budget: `max_tokens` whole rows.
    """
    tokens, vocab = max(1, max_tokens), max(1, vocab_size)
    if chunk_bytes is None or tokens * vocab * bytes_per_logit <= chunk_bytes:
        return tokens, vocab
    per_token = max(1, min(vocab, MIN_SLICE) * bytes_per_logit)
    tokens = max(1, min(tokens, chunk_bytes // per_token))
    return tokens, max(1, min(vocab, chunk_bytes // (tokens * bytes_per_logit)))


def _live_tiles(*, kl: bool, reverse_kl: bool, entropy: bool, backward: bool, softcap: bool) -> int:
    """[tokens, slice] tiles alive at once at the chunked path's peak (see the module docstring)."""
    # forward: the policy tile; z kept beside its logsumexp (a transient tile) when the entropy or the difference
    # with the reference needs it; p beside z and the reference tile for the reverse KL
    keep_z = kl or reverse_kl or entropy
    forward = (2 if keep_z else 1) + reverse_kl
    # backward: the gradient tile, the reference's q where the KL has gradient, the cap's derivative
    return max(forward, (1 + kl + softcap) if backward else 0)


def _bytes_per_logit(hidden: Tensor, weight: Tensor, live_tiles: int) -> int:
    """Bytes per (token, vocabulary entry) of `live_tiles` statistic-dtype tiles, plus the matmul's own output when
    it is narrower (bf16 / fp16 under autocast or in the weights) and is widened beside them."""
    stat = torch.finfo(_stat_dtype(hidden)).bits // 8
    device_type = hidden.device.type
    mm = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else weight.dtype
    mm_bytes = torch.finfo(mm).bits // 8 if mm.is_floating_point else stat
    return live_tiles * stat + (mm_bytes if mm_bytes < stat else 0)


def head_logits(h: Tensor, weight: Tensor, bias: Tensor | None = None, scale: float = 1.0,
                softcap: float | None = None) -> Tensor:
    """Output-head logits softcap(scale * (h W^T + b)): h [..., H], weight [V, H], bias [V] -> [..., V] in fp32
    (fp64 for fp64 inputs). The matmul runs in the model dtype (or under autocast), the transform in fp32."""
    z = h @ weight.t() if torch.is_autocast_enabled(h.device.type) else h.to(weight.dtype) @ weight.t()
    if bias is not None:
        # in place on a fresh tile without autograd history (no second tile), unless the sum widens z's dtype
        fresh = not z.requires_grad and torch.result_type(z, bias) == z.dtype
        z = z.add_(bias) if fresh else z + bias
    z = z if z.dtype == torch.float64 else z.float()
    if z.requires_grad:  # the plain path differentiates through the transform: out of place
        if scale != 1.0:
            z = z * scale
        return torch.tanh(z / softcap) * softcap if softcap is not None else z
    # a fresh tensor without autograd history (the chunked tiles): transform in place, no second [N, V] tile
    if scale != 1.0:
        z.mul_(scale)
    if softcap is not None:
        z.div_(softcap).tanh_().mul_(softcap)
    return z


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    """sum_v a[i, v] b[i, v] -> [N], without materialising the product; in the tiles' own (fp32) precision, not
    autocast's."""
    with torch.autocast(a.device.type, enabled=False):
        return torch.einsum("iv,iv->i", a, b)


def _row_max(z: Tensor) -> Tensor:
    """max_v z [N, 1], floored at the dtype's lowest finite value: a row (or slice) of -inf logits then gives
    exp(z - max) = 0 and a logsumexp of -inf, as torch.logsumexp does, never NaN from -inf - (-inf)."""
    return z.amax(-1, keepdim=True).clamp_(min=torch.finfo(z.dtype).min)


def _logsumexp_(z: Tensor, probs: bool) -> tuple[Tensor, Tensor]:
    """(logsumexp(z) [N], sum_v exp(z - max) [N]) of logits z [N, V], computed in z's storage: no second [N, V]
    tile (torch.logsumexp and torch.softmax each allocate one). z is left holding softmax(z) if `probs`, else
    exp(z - max), the softmax up to that sum."""
    m = _row_max(z)
    s = z.sub_(m).exp_().sum(-1, keepdim=True)
    if probs:  # an all -inf slice has s = 0 and stays 0 (its weight in the row is 0 too)
        z.div_(s.clamp(min=torch.finfo(s.dtype).tiny))
    return (s.log() + m).squeeze(-1), s.squeeze(-1)


def _stat_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _slices(vocab: int, width: int) -> list[tuple[int, int]]:
    return [(v, min(v + width, vocab)) for v in range(0, vocab, width)]


def _in_slice(targets: Tensor, v0: int, v1: int) -> tuple[Tensor, Tensor]:
    """(whether each target falls in [v0, v1) [n] bool, its column in the slice, clamped into it [n, 1]): a
    gather or scatter at the column, masked, touches the target's logit where it is and nothing elsewhere, with
    no host sync."""
    return (targets >= v0) & (targets < v1), (targets - v0).clamp(0, v1 - v0 - 1).unsqueeze(-1)


def _slice_w(weight: Tensor, bias: Tensor | None, v0: int, v1: int) -> tuple[Tensor, Tensor | None]:
    return weight[v0:v1], None if bias is None else bias[v0:v1]


class _LinearTokenStats(torch.autograd.Function):
    """Per-token (lp, kl, ref_lp, entropy, reverse_kl, log_sum_sq) [N] from h [N, H], W [V, H]; see the module
    docstring.

    `tile` = (tokens, vocabulary entries) per tile; `transform` = (scale, softcap, ref_scale, ref_softcap) of the
    two heads."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, ref_hidden, ref_weight, ref_bias, tile, want, transform):
        want_kl, want_rkl, want_ent, want_lss = want
        scale, softcap, ref_scale, ref_softcap = transform
        n, vocab = hidden.shape[0], weight.shape[0]
        tokens, width = tile
        slices = _slices(vocab, width)
        stat = _stat_dtype(hidden)
        zeros = hidden.new_zeros(n, dtype=stat)
        lp, kl, ref_lp, ent, rkl, lss, lse, lse_r = (zeros.clone() for _ in range(8))
        has_ref = ref_hidden is not None
        need_d = has_ref and (want_kl or want_rkl)  # the difference zr - z
        keep_z = need_d or want_ent  # z outlives its logsumexp
        want_p = want_ent or want_rkl or want_lss  # the policy's in-slice softmax p_j
        # Each pass over a tile costs about a third of its matmul on a CPU, and each live tile is memory, so
        # log-probs come from a gather and the logsumexp (no log_softmax tensor), KL(q||p) = q.(zr - z) - lse_r +
        # lse (sum q = 1), row dots are einsums (no product tensor) and every tile is reused in place once its
        # value is spent; names are dropped before the next tile is allocated.
        for s in range(0, n, tokens):
            e = min(s + tokens, n)
            h, y = hidden[s:e], targets[s:e]
            hr = ref_hidden[s:e] if has_ref else None
            # per slice j: the normalisers lse_j and the in-slice expectations, combined after the last slice
            part = {key: hidden.new_empty(e - s, len(slices), dtype=stat)
                    for key, on in (("lse", True), ("lse_r", has_ref), ("ent", want_ent), ("lss", want_lss),
                                    ("kl", want_kl), ("rkl", want_rkl)) if on}
            for j, (v0, v1) in enumerate(slices):
                inside, col = _in_slice(y, v0, v1)
                z = head_logits(h, *_slice_w(weight, bias, v0, v1), scale, softcap)
                lp[s:e] = torch.where(inside, z.gather(-1, col).squeeze(-1), lp[s:e])
                p = None
                if keep_z:
                    part["lse"][:, j] = torch.logsumexp(z, dim=-1)
                    if want_p:
                        p = torch.softmax(z, dim=-1)
                else:
                    part["lse"][:, j] = _logsumexp_(z, probs=want_lss)[0]
                    p, z = (z if want_lss else None), None
                if want_ent:
                    part["ent"][:, j] = _rowdot(p, z)
                if want_lss:  # log sum_v p_v^2 >= -2 log V: no underflow
                    part["lss"][:, j] = _rowdot(p, p).log_()
                if not need_d:
                    z = None
                if not want_rkl:
                    p = None
                if has_ref:
                    zr = head_logits(hr, *_slice_w(ref_weight, ref_bias, v0, v1), ref_scale, ref_softcap)
                    ref_lp[s:e] = torch.where(inside, zr.gather(-1, col).squeeze(-1), ref_lp[s:e])
                    d = torch.sub(zr, z, out=z) if need_d else None  # zr - z, in z's storage (one pass)
                    z = None
                    # zr becomes exp(zr - m), q_j unnormalised: E_{q_j}[d] = (exp(zr - m) . d) / sum exp(zr - m)
                    part["lse_r"][:, j], total = _logsumexp_(zr, probs=False)
                    if want_rkl:
                        part["rkl"][:, j] = _rowdot(p, d)
                    if want_kl:  # d is spent after this: the product in its storage (einsum's bmm is ~5x slower)
                        part["kl"][:, j] = d.mul_(zr).sum(-1).div_(total)
                    del zr, d, total
                del z, p
            # the slices' normalisers combine into the row's; w_j = exp(lse_j - lse) weighs slice j's expectations
            lse[s:e] = torch.logsumexp(part["lse"], dim=-1)
            log_w = part["lse"] - lse[s:e].unsqueeze(-1)
            if want_ent:  # H = lse - E_p[z]
                ent[s:e] = lse[s:e] - (log_w.exp() * part["ent"]).sum(-1)
            if want_lss:  # sum_v p_v^2 = sum_j w_j^2 sum_v p_j,v^2
                lss[s:e] = torch.logsumexp(2 * log_w + part["lss"], dim=-1)
            if has_ref:
                lse_r[s:e] = torch.logsumexp(part["lse_r"], dim=-1)
                if want_kl:  # KL(q || p) = E_q[zr - z] - lse_r + lse
                    w_r = (part["lse_r"] - lse_r[s:e].unsqueeze(-1)).exp_()
                    kl[s:e] = (w_r * part["kl"]).sum(-1) - lse_r[s:e] + lse[s:e]
                if want_rkl:  # KL(p || q) = lse_r - lse - E_p[zr - z]
                    rkl[s:e] = lse_r[s:e] - lse[s:e] - (log_w.exp() * part["rkl"]).sum(-1)
            del part, log_w
        lp -= lse
        ref_lp -= lse_r
        ctx.save_for_backward(hidden, weight, bias, targets, ref_hidden, ref_weight, ref_bias, lse,
                              lse_r if has_ref else None)
        ctx.tile = tile
        ctx.transform = transform
        device_type = hidden.device.type
        # backward recomputes the tiles: under the same autocast as forward, so gradients match the loss exactly
        ctx.autocast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        ctx.mark_non_differentiable(ref_lp, ent, rkl, lss)
        return lp, kl, ref_lp, ent, rkl, lss

    @staticmethod
    def backward(ctx, g_lp, g_kl, _g_ref, _g_ent, _g_rkl, _g_lss):
        if ctx.autocast is None:
            return _LinearTokenStats._backward(ctx, g_lp, g_kl)
        with torch.autocast(ctx.saved_tensors[0].device.type, dtype=ctx.autocast):
            return _LinearTokenStats._backward(ctx, g_lp, g_kl)

    @staticmethod
    def _backward(ctx, g_lp, g_kl):
        hidden, weight, bias, targets, ref_hidden, ref_weight, ref_bias, lse, lse_r = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        n, vocab = hidden.shape[0], weight.shape[0]
        tokens, width = ctx.tile
        slices = _slices(vocab, width)
        acc = _stat_dtype(hidden)
        grad_h = torch.zeros(hidden.shape, dtype=acc, device=hidden.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if need_b else None
        # grad_h accumulates over slices in place when the matmul runs in its dtype (no autocast, no narrower
        # weights); otherwise each slice's narrower product is widened and added
        fused_h = weight.dtype == acc and not torch.is_autocast_enabled(hidden.device.type)
        scale, softcap, ref_scale, ref_softcap = ctx.transform
        if g_lp is None:
            g_lp = hidden.new_zeros(n, dtype=acc)
        for s in range(0, n, tokens):
            e = min(s + tokens, n)
            h, y = hidden[s:e], targets[s:e]
            h_acc = h.to(acc) if need_w else None
            a = g_lp[s:e].to(acc)
            b = g_kl[s:e].to(acc) if g_kl is not None else None
            # the reference tile only where the KL has gradient (not TDPO2's chosen rows): one run of rows when
            # rejected rows follow chosen ones, else an index
            rows = (b != 0).nonzero().squeeze(1) if b is not None else None
            run = None
            if rows is not None and rows.numel():
                r0, r1 = int(rows[0]), int(rows[-1]) + 1
                run = slice(r0, r1) if r1 - r0 == rows.numel() else None
                h_ref = ref_hidden[s + r0:s + r1] if run is not None else ref_hidden[s:e].index_select(0, rows)
                l_ref = (lse_r[s + r0:s + r1] if run is not None else lse_r[s:e].index_select(0, rows)).unsqueeze(-1)
                b_ref = (b[run] if run is not None else b.index_select(0, rows)).unsqueeze(-1)
            has_rows = rows is not None and rows.numel() > 0
            coef = (-a if b is None else b - a).unsqueeze(-1)
            for v0, v1 in slices:
                w_j, b_j = _slice_w(weight, bias, v0, v1)
                z = head_logits(h, w_j, b_j, scale, softcap)
                # d softcap(u) / du = 1 - (z / c)^2, taken before z's storage becomes p
                dcap = torch.div(z, softcap).square_().neg_().add_(1.0) if softcap is not None else None
                grad_z = z.sub_(lse[s:e].unsqueeze(-1)).exp_().mul_(coef)  # p * (g_kl - g_lp)
                del z
                if has_rows:
                    q = head_logits(h_ref, *_slice_w(ref_weight, ref_bias, v0, v1), ref_scale, ref_softcap)
                    q.sub_(l_ref).exp_()
                    if run is not None:
                        grad_z[run].addcmul_(q, b_ref, value=-1.0)
                    else:
                        grad_z.index_add_(0, rows, q.mul_(-b_ref))
                    del q
                inside, col = _in_slice(y, v0, v1)
                grad_z.scatter_add_(-1, col, (a * inside).unsqueeze(-1))
                if dcap is not None:  # chain rule through the head's transform: grad_u = grad_z * dz/du
                    grad_z.mul_(dcap)
                    del dcap
                if scale != 1.0:
                    grad_z.mul_(scale)
                if need_h:
                    if fused_h:
                        grad_h[s:e].addmm_(grad_z, w_j)
                    else:
                        grad_h[s:e] += grad_z.to(weight.dtype) @ w_j
                if need_w:
                    grad_w[v0:v1].addmm_(grad_z.t(), h_acc)
                if need_b:
                    grad_b[v0:v1] += grad_z.sum(0)
                del grad_z
        return (
            grad_h.to(hidden.dtype) if need_h else None,
            grad_w.to(weight.dtype) if need_w else None,
            grad_b.to(bias.dtype) if need_b else None,
            None, None, None, None, None, None, None,
        )


def _flatten_scored(hidden: Tensor, mask: Tensor) -> Tensor:
    return hidden[:, :-1][mask]


def chunked_sequence_stats(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    scale: float = 1.0,
    softcap: float | None = None,
    ref_hidden: Tensor | None = None,
    ref_weight: Tensor | None = None,
    ref_bias: Tensor | None = None,
    ref_scale: float = 1.0,
    ref_softcap: float | None = None,
    ignore_index: int = -100,
    chunk_size: int = 1024,
    chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
    kl: bool = False,
    reverse_kl: bool = False,
    entropy: bool = False,
    return_token_logps: bool = False,
    log_sum_sq: bool = False,
) -> SequenceStats:
    """Per-sequence statistics from hidden states, one tile of tokens at a time, never [N, V] logits.

    hidden [B, T, H] (final hidden states, after the final norm), weight [V, H] and bias [V] (lm_head), scale and
    softcap (the head's transform, module docstring), labels [B, T] (HF-aligned, ignore_index on unscored
    positions); ref_* the reference model's, needed for `ref_logps`, `kl` (forward, ref||policy) and
    `reverse_kl`. Gradients flow to hidden, weight and bias through `logps`, `kl` and `token_logps`; `ref_logps`,
    `reverse_kl` and `entropy` are computed without gradient.

    Tile size: `tile_shape` -- up to `chunk_size` scored tokens by as many vocabulary entries as keep one tile's
    live temporaries (policy and reference, forward and backward) within `chunk_bytes` (None: no budget, whole
    rows). Values and gradients do not depend on either beyond rounding.
    """
    if (kl or reverse_kl) and ref_hidden is None:
        raise ValueError("kl / reverse_kl need ref_hidden and ref_weight")
    if ref_hidden is not None and ref_weight is None:
        raise ValueError("ref_hidden given without ref_weight")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if chunk_bytes is not None and chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1 or None, got {chunk_bytes}")
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    live = _live_tiles(kl=kl, reverse_kl=reverse_kl, entropy=entropy, backward=grad, softcap=softcap is not None)
    tile = tile_shape(weight.shape[0], _bytes_per_logit(hidden, weight, live), chunk_bytes, chunk_size)
    targets, mask = shift_labels(labels, ignore_index=ignore_index)
    scored = targets[mask]
    outside = scored[(scored < 0) | (scored >= weight.shape[0])]  # one host sync; the slices would clamp them
    if outside.numel():
        raise ValueError(f"label id {int(outside[0])} is outside the output layer's {weight.shape[0]} rows")
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(mask)[mask]
    h = _flatten_scored(hidden, mask)
    h_ref = _flatten_scored(ref_hidden, mask) if ref_hidden is not None else None
    lp, tok_kl, ref_lp, ent, rkl, lss = _LinearTokenStats.apply(
        h, weight, bias, scored, h_ref, ref_weight, ref_bias, tile, (kl, reverse_kl, entropy, log_sum_sq),
        (float(scale), softcap, float(ref_scale), ref_softcap),
    )
    batch = labels.shape[0]

    def per_row(x: Tensor) -> Tensor:
        return torch.zeros(batch, dtype=x.dtype, device=x.device).index_add(0, rows, x)

    def per_token(x: Tensor) -> Tensor:
        return torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_scatter(mask, x)

    has_ref = ref_hidden is not None
    return SequenceStats(
        logps=per_row(lp),
        lengths=mask.sum(-1),
        ref_logps=per_row(ref_lp) if has_ref else None,
        kl=per_row(tok_kl) if kl else None,
        reverse_kl=per_row(rkl) if reverse_kl else None,
        entropy=per_row(ent) if entropy else None,
        token_logps=per_token(lp) if return_token_logps else None,
        ref_token_logps=per_token(ref_lp) if return_token_logps and has_ref else None,
        log_sum_sq=per_row(lss) if log_sum_sq else None,
    )


def plain_sequence_stats(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    scale: float = 1.0,
    softcap: float | None = None,
    ref_hidden: Tensor | None = None,
    ref_weight: Tensor | None = None,
    ref_bias: Tensor | None = None,
    ref_scale: float = 1.0,
    ref_softcap: float | None = None,
    ignore_index: int = -100,
    chunk_size: int = 1024,
    chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
    kl: bool = False,
    reverse_kl: bool = False,
    entropy: bool = False,
    return_token_logps: bool = False,
    log_sum_sq: bool = False,
) -> SequenceStats:
    """The reference for `chunked_sequence_stats` (same signature; `chunk_size` and `chunk_bytes` unused): full
    [B, T, V] logits."""
    if (kl or reverse_kl) and ref_hidden is None:
        raise ValueError("kl / reverse_kl need ref_hidden and ref_weight")
    del chunk_size, chunk_bytes
    logits = head_logits(hidden, weight, bias, scale, softcap)
    _, mask = shift_labels(labels, ignore_index=ignore_index)
    lp, _ = token_logps(logits, labels, ignore_index=ignore_index)
    out = SequenceStats(logps=lp.sum(-1), lengths=mask.sum(-1), token_logps=lp if return_token_logps else None)
    if ref_hidden is not None:
        with torch.no_grad():
            ref_logits = head_logits(ref_hidden, ref_weight, ref_bias, ref_scale, ref_softcap)
            ref_lp, _ = token_logps(ref_logits, labels, ignore_index=ignore_index)
            out.ref_logps = ref_lp.sum(-1)
            out.ref_token_logps = ref_lp if return_token_logps else None
        if kl:
            out.kl = (token_kl(logits[:, :-1], ref_logits[:, :-1], direction="ref||policy") * mask).sum(-1)
        if reverse_kl:
            with torch.no_grad():
                rev = token_kl(logits[:, :-1], ref_logits[:, :-1], direction="policy||ref")
            out.reverse_kl = (rev * mask).sum(-1)
    if entropy:
        with torch.no_grad():
            out.entropy = sequence_entropy(logits, labels, ignore_index=ignore_index, average=False)
    if log_sum_sq:
        with torch.no_grad():
            log_p = torch.log_softmax(logits[:, :-1], dim=-1)
            out.log_sum_sq = (torch.logsumexp(2.0 * log_p, dim=-1) * mask).sum(-1)
    return out


@torch.no_grad()
def chunked_argmax(hidden: Tensor, weight: Tensor, *, bias: Tensor | None = None, scale: float = 1.0,
                   softcap: float | None = None, chunk_size: int = 1024,
                   chunk_bytes: int | None = DEFAULT_CHUNK_BYTES) -> Tensor:
    """Greedy next-token guess at every position without full logits: hidden [B, T, H], weight [V, H] -> [B, T].

    One tile at a time, sized as in `chunked_sequence_stats` (`tile_shape`, one live tile); across vocabulary
    slices a later slice wins only when strictly greater, so ties go to the lowest index as in torch.argmax. The
    head's transform is applied too: it is monotone, but a softcap can saturate distinct logits into ties."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    tokens, width = tile_shape(weight.shape[0], _bytes_per_logit(hidden, weight, 1), chunk_bytes, chunk_size)
    out = torch.empty(flat.shape[0], dtype=torch.long, device=hidden.device)
    for s in range(0, flat.shape[0], tokens):
        best = guess = None
        for v0, v1 in _slices(weight.shape[0], width):
            z = head_logits(flat[s : s + tokens], *_slice_w(weight, bias, v0, v1), scale, softcap)
            index = z.argmax(-1, keepdim=True)
            value, index = z.gather(-1, index).squeeze(-1), index.squeeze(-1) + v0
            del z
            if best is None:
                best, guess = value, index
            else:
                # a NaN is the maximum, as for torch.argmax: the first one wins
                better = (value > best) | (value.isnan() & ~best.isnan())
                best, guess = torch.where(better, value, best), torch.where(better, index, guess)
        out[s : s + tokens] = guess
    return out.view(hidden.shape[:-1])


__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "SequenceStats",
    "chunked_argmax",
    "chunked_sequence_stats",
    "head_logits",
    "plain_sequence_stats",
    "tile_shape",
]
