"""The SAE-independent part of a pass: which records cover a pass (shapes), a clean summary's rows flattened
to positions, and a cold pass's recording, batch by batch, into CPU records."""

from __future__ import annotations

import torch

from pytest_saeval.engine.hooks import Group
from pytest_saeval.engine.losses import DistributionSummary
from pytest_saeval.engine.records import CLEAN_FIELDS, CleanSummary, HookRecord, ModelRecords, Recording, entry_name

R, ROWS, T, D, K = 2, 3, 5, 4, 3  # reconstruction rows, all rows, context, d_model, top tokens


def _summary(n_rows: int = R) -> CleanSummary:
    lead = (n_rows, T)
    return CleanSummary(top_index=torch.zeros(*lead, K, dtype=torch.int64), top_prob=torch.rand(*lead, K),
                        top_logit=torch.randn(*lead, K), tail_moment=torch.randn(*lead, D),
                        lse=torch.randn(*lead, dtype=torch.float64), ce=torch.randn(*lead))


def _hook(rows: int = ROWS, resid: bool = True) -> HookRecord:
    return HookRecord(acts=torch.randn(rows, T, D), block_resid=torch.randn(R, T, D) if resid else None,
                      ablation_kl=torch.randn(R, T), ablation_ce=torch.randn(R, T - 1))


KEY = ("blocks.1.hook_mlp_out", None)


def test_records_fit_a_pass_of_their_shapes_only() -> None:
    records = ModelRecords(final_resid=torch.randn(R, T, D), hooks={KEY: _hook()}, clean=_summary())
    assert records.fits(R, ROWS, T, [KEY])
    assert records.fits(R, ROWS, T, [])
    assert not records.fits(R, ROWS, T, [KEY, ("blocks.0.hook_resid_pre", None)])  # a hook not recorded
    assert not records.fits(R + 1, ROWS, T, [KEY])  # more reconstruction rows
    assert not records.fits(R, ROWS + 1, T, [KEY])  # more sparsity rows
    assert not records.fits(R, ROWS, T + 1, [KEY])  # another context
    short = ModelRecords(final_resid=torch.randn(R, T, D), hooks={KEY: _hook()}, clean=_summary(R - 1))
    assert not short.fits(R, ROWS, T, [KEY])  # the clean summary does not cover the rows
    capped = ModelRecords(final_resid=torch.randn(R, T, D), hooks={KEY: _hook(resid=False)}, clean=None)
    assert capped.fits(R, ROWS, T, [KEY])  # no summary (soft-capped logits) and no separate block residual


def test_a_clean_summarys_rows_flatten_to_positions() -> None:
    summary = _summary()
    part, ce = summary.rows(slice(1, 2), lambda t: t * 1)
    assert isinstance(part, DistributionSummary)
    assert part.top_prob.shape == (T, K) and part.tail_moment.shape == (T, D) and ce.shape == (T,)
    assert torch.equal(part.lse, summary.lse[1]) and torch.equal(ce, summary.ce[1])
    assert summary.fits(R, T, D) and not summary.fits(R, T, D + 1)
    assert CLEAN_FIELDS == ("top_index", "top_prob", "top_logit", "tail_moment", "lse", "ce")


def test_entry_name() -> None:
    assert entry_name(3) == "blocks.3.hook_resid_pre"


def _batch(rows: int, g_hook: str) -> dict[str, torch.Tensor]:
    return {g_hook: torch.randn(rows, T, D), entry_name(1): torch.randn(rows, T, D)}


def test_a_recording_joins_batches_and_keeps_only_what_the_hook_needs() -> None:
    mlp = Group("blocks.1.hook_mlp_out", None, 1, ("a",))
    entry = Group(entry_name(1), None, 1, ("b",))
    rec = Recording([mlp, entry], with_summary=False)
    batches = []
    for final in (torch.randn(1, T, D), torch.randn(1, T, D), None):  # two reconstruction batches, one sparsity batch
        captured = _batch(1, mlp.hook_name)
        abl = {g: (torch.randn(1, T), torch.randn(1, T - 1)) for g in (mlp, entry)}
        rec.add(captured, final, abl if final is not None else {})
        batches.append((captured, final, abl))
    records = rec.finish([mlp.key, entry.key])
    assert records.clean is None
    assert torch.equal(records.final_resid, torch.cat([b[1] for b in batches[:2]]))
    m, e = records.hooks[mlp.key], records.hooks[entry.key]
    assert torch.equal(m.acts, torch.cat([b[0][mlp.hook_name] for b in batches]))  # every row the pass reads
    assert torch.equal(m.block_resid, torch.cat([b[0][entry_name(1)] for b in batches[:2]]))  # reconstruction rows
    assert e.block_resid is None  # the hook is its block's entry: acts are the block residual
    assert torch.equal(m.ablation_kl, torch.cat([b[2][mlp][0] for b in batches[:2]]))
    assert records.fits(2, 3, T, [mlp.key, entry.key])
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in (m.acts, m.ablation_ce, records.final_resid))


def test_a_recording_with_a_summary_reshapes_flat_positions_to_rows() -> None:
    g = Group(entry_name(1), None, 1, ("a",))
    rec = Recording([g], with_summary=True)
    flat = _summary(1).map(lambda t: t.reshape(-1, *t.shape[2:]))
    ce = torch.randn(T)
    dist = DistributionSummary(flat.top_index, flat.top_prob, flat.top_logit, flat.tail_moment, flat.lse)
    rec.add({g.hook_name: torch.randn(1, T, D)}, torch.randn(1, T, D), {g: (torch.randn(1, T), torch.randn(1, T - 1))},
            (dist, ce))
    records = rec.finish([g.key])
    assert records.clean is not None and records.clean.fits(1, T, D)
    assert torch.equal(records.clean.ce[0], ce) and torch.equal(records.clean.top_prob[0], flat.top_prob)
