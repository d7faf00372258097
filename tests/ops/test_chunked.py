"""The chunked hidden-state path against the plain full-logit path (values and gradients, fp32, rtol 1e-5), and
the memory budget that sizes its tiles."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.ops import chunked, chunked_argmax, chunked_sequence_stats, plain_sequence_stats, tile_shape

FIELDS = ("logps", "ref_logps", "kl", "reverse_kl", "entropy", "lengths", "token_logps", "ref_token_logps",
          "log_sum_sq")


def _problem(seed, batch=3, length=10, hidden=12, vocab=37, prompt=3, bias=False, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, length, hidden, generator=gen, dtype=dtype).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=gen, dtype=dtype) * 0.7).requires_grad_()
    b = (torch.randn(vocab, generator=gen, dtype=dtype) * 0.1).requires_grad_() if bias else None
    hr = torch.randn(batch, length, hidden, generator=gen, dtype=dtype)
    wr = torch.randn(vocab, hidden, generator=gen, dtype=dtype) * 0.7
    labels = torch.randint(0, vocab, (batch, length), generator=gen)
    labels[:, :prompt] = -100
    labels[-1, length - 2 :] = -100  # right padding
    return h, w, b, hr, wr, labels


def _run(fn, h, w, b, hr, wr, labels, chunk_size, coefs):
    s = fn(h, w, labels, bias=b, ref_hidden=hr, ref_weight=wr, kl=True, reverse_kl=True, entropy=True,
           return_token_logps=True, log_sum_sq=True, chunk_size=chunk_size)
    # an arbitrary scalar of the differentiable outputs, with distinct per-row coefficients
    loss = (coefs[0] * s.logps).sum() + (coefs[1] * s.kl).sum() + (s.token_logps ** 2).sum() * 0.1
    params = [t for t in (h, w, b) if t is not None]
    return s, torch.autograd.grad(loss, params)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), chunk=st.integers(1, 40), bias=st.booleans())
def test_chunked_matches_plain(seed, chunk, bias):
    h, w, b, hr, wr, labels = _problem(seed, bias=bias)
    coefs = torch.randn(2, labels.shape[0], generator=torch.Generator().manual_seed(seed + 1))
    plain, g_plain = _run(plain_sequence_stats, h, w, b, hr, wr, labels, chunk, coefs)
    chunked, g_chunked = _run(chunked_sequence_stats, h, w, b, hr, wr, labels, chunk, coefs)
    for field in FIELDS:
        torch.testing.assert_close(getattr(chunked, field), getattr(plain, field), rtol=1e-5, atol=1e-5)
    for a, c in zip(g_chunked, g_plain):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


def test_tdpo2_stop_gradient_rows_match_plain():
    """A zero KL gradient on the chosen half (TDPO2's sg(K_w)) is skipped in backward, with the same result."""
    h, w, _, hr, wr, labels = _problem(7, batch=4)
    grads = []
    for fn in (plain_sequence_stats, chunked_sequence_stats):
        s = fn(h, w, labels, ref_hidden=hr, ref_weight=wr, kl=True, chunk_size=4)
        loss = s.logps.sum() + s.kl[2:].sum() + 0.0 * s.kl[:2].detach().sum()
        grads.append(torch.autograd.grad(loss, [h, w]))
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


def test_invariant_to_padding_amount():
    h, w, _, hr, wr, labels = _problem(3, batch=2)
    base = chunked_sequence_stats(h, w, labels, ref_hidden=hr, ref_weight=wr, kl=True, chunk_size=5)
    pad = 4  # extra right padding: hidden values there are garbage, labels -100
    h2 = torch.cat([h, torch.randn(2, pad, h.shape[-1]) * 100], 1)
    hr2 = torch.cat([hr, torch.randn(2, pad, h.shape[-1]) * 100], 1)
    labels2 = torch.cat([labels, torch.full((2, pad), -100)], 1)
    padded = chunked_sequence_stats(h2, w, labels2, ref_hidden=hr2, ref_weight=wr, kl=True, chunk_size=5)
    torch.testing.assert_close(padded.logps, base.logps)
    torch.testing.assert_close(padded.kl, base.kl)


def test_left_vs_right_padding_give_same_scores():
    h, w, _, _, _, labels = _problem(5, batch=1, prompt=2)
    right = chunked_sequence_stats(torch.cat([h, torch.randn(1, 3, h.shape[-1])], 1), w,
                                   torch.cat([labels, torch.full((1, 3), -100)], 1))
    left = chunked_sequence_stats(torch.cat([torch.randn(1, 3, h.shape[-1]), h], 1), w,
                                  torch.cat([torch.full((1, 3), -100), labels], 1))
    torch.testing.assert_close(left.logps, right.logps)


def test_no_scored_tokens_gives_zeros_and_zero_grads():
    h, w, _, _, _, labels = _problem(1)
    labels[:] = -100
    s = chunked_sequence_stats(h, w, labels)
    assert torch.equal(s.logps, torch.zeros(3)) and torch.equal(s.lengths, torch.zeros(3, dtype=torch.long))
    (g,) = torch.autograd.grad(s.logps.sum(), [w], allow_unused=True)
    assert g is None or torch.count_nonzero(g) == 0


def test_frozen_weight_gets_no_grad_and_hidden_still_does():
    h, w, _, _, _, labels = _problem(2)
    w = w.detach()
    s = chunked_sequence_stats(h, w, labels)
    (g,) = torch.autograd.grad(s.logps.sum(), [h])
    assert torch.count_nonzero(g) > 0


def test_bf16_matches_fp32_within_bf16_precision():
    h, w, _, hr, wr, labels = _problem(4)
    s32 = chunked_sequence_stats(h.detach(), w.detach(), labels, ref_hidden=hr, ref_weight=wr, kl=True)
    s16 = chunked_sequence_stats(h.detach().bfloat16(), w.detach().bfloat16(), labels, ref_hidden=hr.bfloat16(),
                                 ref_weight=wr.bfloat16(), kl=True)
    assert s16.logps.dtype == torch.float32 and torch.isfinite(s16.kl).all()
    torch.testing.assert_close(s16.logps, s32.logps, rtol=0.05, atol=0.5)


def test_kl_requires_reference():
    h, w, _, _, _, labels = _problem(0)
    with pytest.raises(ValueError, match="ref_hidden"):
        chunked_sequence_stats(h, w, labels, kl=True)


def test_chunked_argmax_matches_full_logits():
    h, w, b, _, _, _ = _problem(9, bias=True)
    full = (h @ w.t() + b).argmax(-1)
    assert torch.equal(chunked_argmax(h, w, bias=b, chunk_size=7), full)


@pytest.mark.parametrize("rows_with_kl", [[0, 2], [1], [0, 1, 2]])
def test_kl_gradient_on_any_subset_of_rows(rows_with_kl):
    """Backward recomputes the reference only where the KL has gradient: contiguous or scattered rows."""
    h, w, _, hr, wr, labels = _problem(11)
    grads = []
    for fn in (plain_sequence_stats, chunked_sequence_stats):
        s = fn(h, w, labels, ref_hidden=hr, ref_weight=wr, kl=True, chunk_size=64)
        loss = s.logps.sum() + s.kl[rows_with_kl].sum()
        grads.append(torch.autograd.grad(loss, [h, w]))
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ transformed heads
HEADS = [(1.0, None), (0.0625, None), (1.0 / 8.0, None), (1.0, 5.0), (1.0, 0.7), (2.5, 3.0)]


@pytest.mark.parametrize("scale,softcap", HEADS)
def test_chunked_matches_plain_with_head_transform(scale, softcap):
    """Scaled and soft-capped heads (Cohere, Granite, Gemma-2/3): values and gradients, both models transformed."""
    h, w, b, hr, wr, labels = _problem(11, bias=True)
    w = (w.detach() * 4).requires_grad_()  # large logits, so the cap saturates and a wrong transform shows
    coefs = torch.randn(2, labels.shape[0], generator=torch.Generator().manual_seed(3))
    out = []
    for fn in (plain_sequence_stats, chunked_sequence_stats):
        s = fn(h, w, labels, bias=b, scale=scale, softcap=softcap, ref_hidden=hr, ref_weight=wr * 4,
               ref_scale=scale, ref_softcap=softcap, kl=True, reverse_kl=True, entropy=True,
               return_token_logps=True, log_sum_sq=True, chunk_size=4)
        loss = (coefs[0] * s.logps).sum() + (coefs[1] * s.kl).sum() + (s.token_logps ** 2).sum() * 0.1
        out.append((s, torch.autograd.grad(loss, [h, w, b])))
    (plain, g_plain), (chunked, g_chunked) = out
    for field in FIELDS:
        torch.testing.assert_close(getattr(chunked, field), getattr(plain, field), rtol=1e-5, atol=1e-5)
    for a, c in zip(g_chunked, g_plain):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale,softcap", HEADS)
def test_transformed_head_against_float64_formula(scale, softcap):
    """Log-probs, forward KL and the log-prob gradient against a float64 loop written from the definition."""
    h, w, _, hr, wr, labels = _problem(5, batch=2)
    w, wr = w.detach() * 4, wr * 4
    h64 = h.detach().double().requires_grad_()
    stats = chunked_sequence_stats(h64, w.double(), labels, scale=scale, softcap=softcap,
                                   ref_hidden=hr.double(), ref_weight=wr.double(), ref_scale=scale,
                                   ref_softcap=softcap, kl=True, chunk_size=3)
    (grad,) = torch.autograd.grad(stats.logps.sum(), [h64])

    def head(x, weight):
        u = scale * (x @ weight.t())
        return softcap * torch.tanh(u / softcap) if softcap is not None else u

    x = h.detach().double().requires_grad_()
    want_lp, want_kl = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for i in range(2):
        for t in range(labels.shape[1] - 1):
            y = int(labels[i, t + 1])
            if y == -100:
                continue
            logp = torch.log_softmax(head(x[i, t], w.double()), -1)
            logq = torch.log_softmax(head(hr[i, t].double(), wr.double()), -1)
            want_lp[i] = want_lp[i] + logp[y]
            want_kl[i] = want_kl[i] + (logq.exp() * (logq - logp)).sum()
    (want_grad,) = torch.autograd.grad(want_lp.sum(), [x])
    torch.testing.assert_close(stats.logps, want_lp, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(stats.kl, want_kl.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, want_grad, rtol=1e-10, atol=1e-10)


def test_argmax_applies_the_softcap():
    """Distinct logits that a cap saturates into an exact fp32 tie: the capped argmax is the model's (first max)."""
    weight = torch.tensor([[1.0], [2.0]])
    hidden = torch.full((1, 1, 1), 200.0)  # logits 200 and 400: tanh(40) == tanh(80) == 1.0 in fp32
    assert int(chunked_argmax(hidden, weight)) == 1
    assert int(chunked_argmax(hidden, weight, softcap=5.0)) == 0


def test_log_sum_sq_and_ref_token_logps_against_float64():
    """WPO's log sum_v p_v^2 per token and the reference's per-token log-probs, from their definitions."""
    h, w, _, hr, wr, labels = _problem(9, batch=2)
    stats = chunked_sequence_stats(h.detach().double(), w.detach().double(), labels, ref_hidden=hr.double(),
                                   ref_weight=wr.double(), log_sum_sq=True, return_token_logps=True, chunk_size=3)
    p = torch.softmax(h.detach().double() @ w.detach().double().t(), -1)[:, :-1]
    logq = torch.log_softmax(hr.double() @ wr.double().t(), -1)[:, :-1]
    scored = labels[:, 1:] != -100
    want_lss = (torch.log((p * p).sum(-1)) * scored).sum(-1)
    want_ref = logq.gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1) * scored
    torch.testing.assert_close(stats.log_sum_sq, want_lss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats.ref_token_logps, want_ref, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------ memory budget
MIB = 2**20


def test_tile_shape_known_values():
    """8 MiB: 1024 tokens by 1024 entries with two live fp32 tiles, by 2048 with one; whole rows when they fit."""
    assert tile_shape(131072, 8, 8 * MIB, 1024) == (1024, 1024)
    assert tile_shape(131072, 4, 8 * MIB, 1024) == (1024, 2048)
    assert tile_shape(1024, 4, 8 * MIB, 1024) == (1024, 1024)  # whole rows
    assert tile_shape(131072, 4, 16 * 128 * 4, 1024) == (16, 128)  # below 128 entries, fewer tokens instead
    assert tile_shape(131072, 8, 1, 1024) == (1, 1)  # a budget below one logit still runs, one at a time
    assert tile_shape(131072, 8, None, 300) == (300, 131072)  # no budget: the token cap alone, whole rows


@settings(max_examples=300, deadline=None)
@given(vocab=st.integers(1, 300_000), per_logit=st.integers(1, 20), budget=st.integers(1, 2**32),
       cap=st.integers(1, 4096))
def test_tile_shape_is_the_largest_tile_within_budget(vocab, per_logit, budget, cap):
    tokens, width = tile_shape(vocab, per_logit, budget, cap)
    assert 1 <= tokens <= cap and 1 <= width <= vocab
    assert tokens * width * per_logit <= budget or (tokens, width) == (1, 1)
    if cap * vocab * per_logit <= budget:
        assert (tokens, width) == (cap, vocab)  # whole rows whenever they fit
    assert width == vocab or tokens * (width + 1) * per_logit > budget  # the widest slice for its tokens
    # all the tokens unless a slice of chunked.MIN_SLICE entries would not fit them
    assert tokens == cap or cap * min(vocab, chunked.MIN_SLICE) * per_logit > budget


def _tiles(monkeypatch, fn, *args, **kwargs):
    """Runs fn(*args, **kwargs), its backward where it has one, and returns the (rows, vocabulary entries) of
    every call of the output head (the tiles) and the result."""
    shapes, head = [], chunked.head_logits

    def spy(h, w, *a, **k):
        shapes.append((h.shape[0], w.shape[0]))
        return head(h, w, *a, **k)

    monkeypatch.setattr(chunked, "head_logits", spy)
    out = fn(*args, **kwargs)
    if isinstance(out, chunked.SequenceStats) and out.logps.requires_grad:
        out.logps.sum().backward()
    return shapes, out


@pytest.mark.parametrize("kl,softcap,per_logit", [(False, None, 4), (True, None, 8), (True, 5.0, 12)])
def test_tiles_follow_the_budget_as_the_vocabulary_grows(monkeypatch, kl, softcap, per_logit):
    """Tiles = tokens x vocabulary entries within the budget, over 4 bytes x the live fp32 tiles: 1 for log-probs
    with the reference's (each tile becomes its probabilities in place), 2 with the forward KL, 3 with a soft
    cap's derivative. A larger vocabulary is cut into more slices; the tile's bytes stay within the budget."""
    budget = 48 * 4 * 64
    for vocab in (64, 128, 256, 1024):
        h, w, _, hr, wr, labels = _problem(1, batch=4, length=30, vocab=vocab, prompt=1)
        shapes, _ = _tiles(monkeypatch, chunked_sequence_stats, h, w, labels, ref_hidden=hr, ref_weight=wr,
                           kl=kl, softcap=softcap, chunk_bytes=budget, chunk_size=10_000)
        tokens, width = tile_shape(vocab, per_logit, budget, 10_000)
        assert max(r for r, _ in shapes) == tokens and max(c for _, c in shapes) == width
        assert max(r * c for r, c in shapes) * per_logit <= budget
        assert sum(c for r, c in shapes if r == tokens) % vocab == 0  # every slice of each full tile, once
        monkeypatch.undo()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("softcap", [None, 3.0])
def test_budget_changes_neither_values_nor_gradients(dtype, tol, softcap):
    """1-token tiles (a 1-byte budget) against one tile for every token (no budget, no cap), all statistics."""
    h, w, b, hr, wr, labels = _problem(13, batch=4, length=12, bias=True, dtype=dtype)
    coefs = torch.randn(2, labels.shape[0], generator=torch.Generator().manual_seed(2), dtype=dtype)
    out = []
    for chunk_bytes, chunk_size in ((1, 1024), (None, 10**6)):
        s = chunked_sequence_stats(h, w, labels, bias=b, softcap=softcap, ref_hidden=hr, ref_weight=wr,
                                   ref_softcap=softcap, kl=True, reverse_kl=True, entropy=True,
                                   return_token_logps=True, log_sum_sq=True, chunk_size=chunk_size,
                                   chunk_bytes=chunk_bytes)
        loss = (coefs[0] * s.logps).sum() + (coefs[1] * s.kl).sum() + (s.token_logps ** 2).sum() * 0.1
        out.append((s, torch.autograd.grad(loss, [h, w, b])))
    (tiny, g_tiny), (whole, g_whole) = out
    for field in FIELDS:
        torch.testing.assert_close(getattr(tiny, field), getattr(whole, field), rtol=tol, atol=tol)
    for a, c in zip(g_tiny, g_whole):
        torch.testing.assert_close(a, c, rtol=tol, atol=tol)


def test_argmax_tiles_follow_the_budget(monkeypatch):
    h, w, b, _, _, _ = _problem(9, bias=True)
    shapes, guess = _tiles(monkeypatch, chunked_argmax, h, w, bias=b, chunk_bytes=1)
    assert set(shapes) == {(1, 1)} and torch.equal(guess, (h @ w.t() + b).argmax(-1))


@pytest.mark.parametrize("chunk_bytes", [1, 4 * 5, 4 * 16, None])
def test_argmax_ties_across_slices_go_to_the_lowest_index(chunk_bytes):
    """Logits tied between vocabulary slices: the first index wins, as torch.argmax over the whole row."""
    w = torch.zeros(37, 4)
    w[[3, 20, 36], 0] = 1.0  # three tied maxima in different slices
    w[[5, 30], 1] = 2.0  # and two more for the second token
    h = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    guess = chunked_argmax(h, w, chunk_bytes=chunk_bytes, chunk_size=2)
    assert guess.tolist() == [[3, 5, 0]] == (h @ w.t()).argmax(-1).tolist()


def test_bad_budget_is_an_error():
    h, w, _, _, _, labels = _problem(0)
    with pytest.raises(ValueError, match="chunk_bytes"):
        chunked_sequence_stats(h, w, labels, chunk_bytes=0)


def test_a_slice_of_minus_inf_logits_is_not_nan():
    """A vocabulary slice whose logits are all -inf (a -inf bias on a block of entries) adds nothing to the row's
    normaliser: log-probs, the reference's and log sum p^2 equal the whole-row tile's, finite."""
    h, w, b, hr, wr, labels = _problem(4, bias=True, vocab=37)
    labels = labels.masked_fill((labels >= 16) & (labels < 21), 3)  # no target on a -inf entry
    b = b.detach().clone()
    b[16:21] = float("-inf")
    out = []
    for chunk_bytes in (4 * 4 * 5, None):  # slices of 5 entries (one of them all -inf), or whole rows
        s = chunked_sequence_stats(h.detach(), w.detach(), labels, bias=b, ref_hidden=hr, ref_weight=wr, ref_bias=b,
                                   log_sum_sq=True, chunk_size=4, chunk_bytes=chunk_bytes)
        out.append(s)
    for field in ("logps", "ref_logps", "log_sum_sq"):
        assert torch.isfinite(getattr(out[0], field)).all()
        torch.testing.assert_close(getattr(out[0], field), getattr(out[1], field), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [37, 40, -7])
def test_a_label_outside_the_vocabulary_is_an_error(bad):
    h, w, _, _, _, labels = _problem(0, vocab=37)
    labels[0, 5] = bad
    with pytest.raises(ValueError, match=f"label id {bad} is outside the output layer's 37 rows"):
        chunked_sequence_stats(h, w, labels)


def test_argmax_takes_a_nan_as_torch_argmax_does():
    h, w, _, _, _, _ = _problem(3, vocab=37)
    w = w.detach().clone()
    w[20, 0] = float("nan")  # a NaN logit in a later slice, for every token with h[..., 0] != 0
    guess = chunked_argmax(h.detach(), w, chunk_bytes=4 * 5, chunk_size=2)
    assert torch.equal(guess, (h.detach() @ w.t()).argmax(-1))
