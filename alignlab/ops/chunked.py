"""Sequence statistics from final hidden states and the lm_head weight, one tile of tokens at a time.

The plain path materialises [B, T, V] fp32 logits (several copies once log_softmax, the reference's softmax and
the KL temporaries are alive, and again for backward). Here:

1. masked positions are dropped first: only the N scored tokens (response tokens, shifted) are kept as [N, H];
2. the vocabulary projection runs over tiles of tokens, emitting per-token log pi(y), forward
   KL(pi_ref || pi_theta) and, without gradient, the reference log-prob, entropy and reverse KL. A tile's size
   comes from a memory budget, `chunk_bytes` (`tile_tokens`): the [tokens, V] temporaries alive at once in one
   tile -- policy and reference together, forward and backward -- stay within it, so peak memory does not grow
   with the vocabulary; `chunk_size` caps the tokens per tile;
3. backward recomputes each tile's logits and forms the logit gradient in closed form:
       grad_z = g_lp * (onehot(y) - p) + g_kl * (p - q)
   with g_lp, g_kl the per-token upstream gradients autograd hands back, so any sequence-level loss works, and
   p, q from the log-normalisers saved in forward (one in-place exp, no second tile). Tokens whose KL gradient is
   exactly zero (TDPO2's stop-gradient chosen rows) skip the reference recompute.
4. per-token outputs are summed into per-sequence statistics by row index.

Live [tokens, V] tiles at the peak (fp32; `_live_tiles`): log-probs alone, or with the reference's log-probs
(DPO): 1 -- each tile's logsumexp is taken in its own storage; with the forward KL (TDPO): 2 (policy logits,
turned into zr - z, beside the reference's, turned into q); +1 for the reverse KL (p), +1 in backward for a
soft-capped head (the cap's derivative). A low-precision matmul output adds its own element size while it is
widened.

The output head is z = softcap(scale * (h W^T + b)) with softcap(u) = c tanh(u / c) (Gemma-2/3's
final_logit_softcapping; scale is Cohere's logit_scale, 1 / Granite's logits_scaling). Both act on each tile, and
backward carries their derivative, dz/du = scale * (1 - (z / c)^2), so chunking stays exact for every head.

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


DEFAULT_CHUNK_BYTES = 64 * 2**20
"""Default memory budget of one tile's live [tokens, V] temporaries: 64 MiB. In fp32, 128 tokens a tile at a 131k
vocabulary for log-probs (one live tile), 64 with the forward KL (two); the 1024-token `chunk_size` cap binds up to
16k (8k with the KL), so small vocabularies keep the tiles they had."""


def tile_tokens(vocab_size: int, bytes_per_logit: int, chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
                max_tokens: int = 1024) -> int:
    """Tokens per tile so that one tile's live [tokens, V] temporaries fit in `chunk_bytes`.

    `bytes_per_logit` is what the computation holds per (token, vocabulary entry) at its peak: the element size of
    each [tokens, V] tile alive at once, summed (`_live_tiles`). Returns
    max(1, min(max_tokens, chunk_bytes // (vocab_size * bytes_per_logit))): never more than `max_tokens` (the
    `chunk_size` cap), and at least one token, so a budget below one row still runs (that row then exceeds it).
    `chunk_bytes=None` is no budget: `max_tokens` per tile.
    """
    if chunk_bytes is None:
        return max(1, max_tokens)
    return max(1, min(max_tokens, chunk_bytes // max(1, vocab_size * bytes_per_logit)))


def _live_tiles(*, kl: bool, reverse_kl: bool, entropy: bool, backward: bool, softcap: bool) -> int:
    """[tokens, V] tiles alive at once at the chunked path's peak (see the module docstring)."""
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
    """sum_v a[i, v] b[i, v] -> [N], without materialising the product."""
    return torch.einsum("iv,iv->i", a, b)


def _logsumexp_(z: Tensor, probs: bool) -> Tensor:
    """logsumexp(z) [N] of logits z [N, V], computed in z's storage: no second [N, V] tile (torch.logsumexp and
    torch.softmax each allocate one). z is left holding softmax(z) if `probs`, else spent (exp(z - max))."""
    m = z.amax(-1, keepdim=True)
    s = z.sub_(m).exp_().sum(-1, keepdim=True)
    if probs:
        z.div_(s)
    return (s.log_() + m).squeeze(-1)


def _stat_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class _LinearTokenStats(torch.autograd.Function):
    """Per-token (lp, kl, ref_lp, entropy, reverse_kl, log_sum_sq) [N] from h [N, H], W [V, H]; see the module
    docstring.

    `transform` = (scale, softcap, ref_scale, ref_softcap) of the two heads."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, ref_hidden, ref_weight, ref_bias, chunk_size, want, transform):
        want_kl, want_rkl, want_ent, want_lss = want
        scale, softcap, ref_scale, ref_softcap = transform
        n = hidden.shape[0]
        zeros = hidden.new_zeros(n, dtype=_stat_dtype(hidden))
        lp, kl, ref_lp, ent, rkl, lss, lse, lse_r = (zeros.clone() for _ in range(8))
        has_ref = ref_hidden is not None
        need_d = has_ref and (want_kl or want_rkl)  # the difference zr - z
        keep_z = need_d or want_ent  # z outlives its logsumexp
        # Each [chunk, V] pass costs about a third of the chunk's matmul on a CPU, and each live tile is memory, so
        # log-probs come from a gather and the logsumexp (no log_softmax tensor), KL(q||p) = q.(zr - z) - lse_r +
        # lse (sum q = 1), row dots are einsums (no product tensor) and every tile is reused in place once its
        # value is spent; names are dropped before the next tile is allocated.
        for s in range(0, n, chunk_size):
            e = min(s + chunk_size, n)
            y = targets[s:e].unsqueeze(-1)
            z = head_logits(hidden[s:e], weight, bias, scale, softcap)
            lp[s:e] = z.gather(-1, y).squeeze(-1)
            p = None
            if keep_z:
                lse[s:e] = torch.logsumexp(z, dim=-1)
                if want_ent or want_rkl or want_lss:
                    p = torch.softmax(z, dim=-1)
            else:
                lse[s:e] = _logsumexp_(z, probs=want_lss)
                p, z = (z if want_lss else None), None
            if want_ent:
                ent[s:e] = lse[s:e] - _rowdot(p, z)
            if want_lss:  # log sum_v p_v^2 >= -2 log V: no underflow
                lss[s:e] = _rowdot(p, p).log_()
            if not need_d:
                z = None
            if not want_rkl:
                p = None
            if has_ref:
                zr = head_logits(ref_hidden[s:e], ref_weight, ref_bias, ref_scale, ref_softcap)
                ref_lp[s:e] = zr.gather(-1, y).squeeze(-1)
                d = z.neg_().add_(zr) if need_d else None  # zr - z, in z's storage
                z = None
                lse_r[s:e] = _logsumexp_(zr, probs=want_kl)  # zr becomes q
                if want_rkl:
                    rkl[s:e] = lse_r[s:e] - lse[s:e] - _rowdot(p, d)
                if want_kl:
                    kl[s:e] = _rowdot(zr, d) - lse_r[s:e] + lse[s:e]
                del zr, d
            del z, p
        lp -= lse
        ref_lp -= lse_r
        ctx.save_for_backward(hidden, weight, bias, targets, ref_hidden, ref_weight, ref_bias, lse,
                              lse_r if has_ref else None)
        ctx.chunk_size = chunk_size
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
        n = hidden.shape[0]
        grad_h = torch.empty_like(hidden) if need_h else None
        acc = _stat_dtype(hidden)
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if need_b else None
        scale, softcap, ref_scale, ref_softcap = ctx.transform
        if g_lp is None:
            g_lp = hidden.new_zeros(n, dtype=acc)
        for s in range(0, n, ctx.chunk_size):
            e = min(s + ctx.chunk_size, n)
            z = head_logits(hidden[s:e], weight, bias, scale, softcap)
            # d softcap(u) / du = 1 - (z / c)^2, taken before z's storage becomes p
            dcap = torch.div(z, softcap).square_().neg_().add_(1.0) if softcap is not None else None
            p = z.sub_(lse[s:e].unsqueeze(-1)).exp_()
            del z
            a = g_lp[s:e].to(acc)
            b = g_kl[s:e].to(acc) if g_kl is not None else None
            if b is None:
                grad_z = p.mul_(-a.unsqueeze(-1))
            else:
                grad_z = p.mul_((b - a).unsqueeze(-1))
                rows = (b != 0).nonzero().squeeze(1)
                if rows.numel():  # the reference tile only where the KL has gradient (not TDPO2's chosen rows)
                    r0, r1 = int(rows[0]), int(rows[-1]) + 1
                    if r1 - r0 == rows.numel():  # one run of rows (rejected rows follow chosen ones): one fused pass
                        q = head_logits(ref_hidden[s + r0:s + r1], ref_weight, ref_bias, ref_scale, ref_softcap)
                        q.sub_(lse_r[s + r0:s + r1].unsqueeze(-1)).exp_()
                        grad_z[r0:r1].addcmul_(q, b[r0:r1].unsqueeze(-1), value=-1.0)
                    else:
                        q = head_logits(ref_hidden[s:e].index_select(0, rows), ref_weight, ref_bias, ref_scale,
                                        ref_softcap)
                        q.sub_(lse_r[s:e].index_select(0, rows).unsqueeze(-1)).exp_()
                        grad_z.index_add_(0, rows, q.mul_(-b.index_select(0, rows).unsqueeze(-1)))
                    del q
            del p
            grad_z.scatter_add_(-1, targets[s:e].unsqueeze(-1), a.unsqueeze(-1))
            if dcap is not None:  # chain rule through the head's transform: grad_u = grad_z * dz/du
                grad_z.mul_(dcap)
                del dcap
            if scale != 1.0:
                grad_z.mul_(scale)
            if need_h:
                grad_h[s:e] = (grad_z.to(weight.dtype) @ weight).to(grad_h.dtype)
            if need_w:
                grad_w.addmm_(grad_z.t(), hidden[s:e].to(acc))
            if need_b:
                grad_b += grad_z.sum(0)
            del grad_z
        return (
            grad_h,
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

    Tile size: `tile_tokens` -- as many scored tokens as keep one tile's live [tokens, V] temporaries (policy and
    reference, forward and backward) within `chunk_bytes` (None: no budget), at most `chunk_size`. Values and
    gradients do not depend on either beyond rounding.
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
    tokens = tile_tokens(weight.shape[0], _bytes_per_logit(hidden, weight, live), chunk_bytes, chunk_size)
    targets, mask = shift_labels(labels, ignore_index=ignore_index)
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(mask)[mask]
    h = _flatten_scored(hidden, mask)
    h_ref = _flatten_scored(ref_hidden, mask) if ref_hidden is not None else None
    lp, tok_kl, ref_lp, ent, rkl, lss = _LinearTokenStats.apply(
        h, weight, bias, targets[mask], h_ref, ref_weight, ref_bias, tokens, (kl, reverse_kl, entropy, log_sum_sq),
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

    One [tokens, V] tile at a time, sized as in `chunked_sequence_stats` (`tile_tokens`, one live tile). The
    head's transform is applied too: it is monotone, but a softcap can saturate distinct logits into ties."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    tokens = tile_tokens(weight.shape[0], _bytes_per_logit(hidden, weight, 1), chunk_bytes, chunk_size)
    out = torch.empty(flat.shape[0], dtype=torch.long, device=hidden.device)
    for s in range(0, flat.shape[0], tokens):
        out[s : s + tokens] = head_logits(flat[s : s + tokens], weight, bias, scale, softcap).argmax(-1)
    return out.view(hidden.shape[:-1])


__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "SequenceStats",
    "chunked_argmax",
    "chunked_sequence_stats",
    "head_logits",
    "plain_sequence_stats",
    "tile_tokens",
]
