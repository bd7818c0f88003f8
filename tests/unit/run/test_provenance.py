"""Provenance: what a result was measured on, and the notes when a baseline was recorded on other inputs."""

from __future__ import annotations

from pathlib import Path


def test_provenance_notes_from_hand_set_values(tmp_path: Path) -> None:
    from pytest_saeval.run.provenance import Note, Provenance, provenance_notes
    from pytest_saeval.spec.baseline import Baseline

    recorded = Provenance.from_dict({"sae_xxh3": "a" * 32, "model_xxh3": "b" * 32, "tokens_xxh3": "c" * 32,
                                     "torch_version": "2.12.0", "device": "cpu"}).to_dict()
    baseline = Baseline(path=tmp_path / "b.json", values={"s": {"l0": 1.0}}, provenances={"s": recorded})

    def current(**changes: str) -> Provenance:
        return Provenance.from_dict({**recorded, **changes})

    assert provenance_notes("x.yaml", {"s": current()}, baseline) == []
    assert provenance_notes("x.yaml", {"s": current()}, None) == []
    assert provenance_notes("x.yaml", {"other": current()}, baseline) == []  # nothing recorded for it
    only_sae = Baseline(path=tmp_path / "b.json", values={"s": {"l0": 1.0}}, provenances={"s": {"sae_xxh3": "a" * 32}})
    (retrained,) = provenance_notes("x.yaml", {"s": current(sae_xxh3="d" * 32)}, only_sae)
    # the normal case after a retrain: information, not an alarm
    assert retrained == Note("s", "[s] baseline recorded on earlier SAE weights (xxh3 aaaaaaaaaaaa -> dddddddddddd): "
                                  "comparing the new weights with it", loud=False)
    (note,) = provenance_notes("x.yaml", {"s": current(model_xxh3="e" * 32, tokens_xxh3="f" * 32, device="cuda:0")},
                               baseline)
    assert note.loud and note.sae_id == "s"
    assert note.text.startswith(f"[s] the baseline {tmp_path / 'b.json'} was recorded on other model weights "
                                "(xxh3 bbbbbbbbbbbb -> eeeeeeeeeeee) and tokens (xxh3")
    assert "compare values measured on different inputs (also changed: device cpu -> cuda:0). Fix: " in note.text
    assert "--update-baseline" in note.text
    (tokens_only,) = provenance_notes("x.yaml", {"s": current(tokens_xxh3="f" * 32)}, baseline)
    assert tokens_only.loud
    (env_only,) = provenance_notes("x.yaml", {"s": current(torch_version="2.13.0")}, baseline)
    assert env_only == Note("s", "[s] baseline recorded with another environment (torch 2.12.0 -> 2.13.0); "
                                 "small numeric differences are possible", loud=False)
