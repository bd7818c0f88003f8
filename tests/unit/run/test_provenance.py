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


def test_an_evaluation_on_a_conftest_s_inputs_notes_only_inputs_other_than_the_baseline_s(tmp_path: Path) -> None:
    from pytest_saeval.run.provenance import Provenance, provenance_notes
    from pytest_saeval.spec.baseline import Baseline

    recorded = {"sae_xxh3": "a" * 32, "model_xxh3": "b" * 32, "tokens_xxh3": "c" * 32, "torch_version": "2.12.0"}
    baseline = Baseline(path=tmp_path / "b.json", values={"s": {"l0": 1.0}}, provenances={"s": recorded})
    over = ("saeval_tokens from tests/conftest.py",)

    def notes(**changes: str) -> list:
        return provenance_notes("x.yaml", {"s": Provenance.from_dict({**recorded, **changes})}, baseline, over)

    assert notes() == []  # the conftest's tokens are the suite's own: nothing to say
    assert notes(sae_xxh3="d" * 32, torch_version="2.13.0") == []  # a retrain is said by the suite's own run
    (note,) = notes(tokens_xxh3="f" * 32)
    assert note.loud and note.text.startswith(
        f"[s] evaluated with saeval_tokens from tests/conftest.py: the baseline {tmp_path / 'b.json'} was recorded "
        "on the suite's own inputs, not on these (tokens (xxh3 cccccccccccc -> ffffffffffff)): gates that use "
        "`baseline` compare values measured on different inputs. Fix: ")
    assert "--update-baseline" not in note.text  # an override never becomes the baseline


def test_provenance_round_trip_and_unknown_keys() -> None:
    from pytest_saeval.run.provenance import Provenance

    full = {"pytest_saeval_version": "1", "sae_lens_version": "6.0", "transformer_lens_version": "2.0",
            "torch_version": "2.12.0", "python_version": "3.11.9", "device": "cpu", "sae_xxh3": "a" * 32,
            "model_xxh3": "b" * 32, "tokens_xxh3": "c" * 32}
    prov = Provenance.from_dict(full)
    assert prov.to_dict() == full and Provenance.from_dict(prov.to_dict()) == prov
    sparse = Provenance.from_dict({"device": "cuda:0", "extra": "ignored", "sae_xxh3": 7})
    assert sparse.device == "cuda:0" and sparse.sae_xxh3 == "7" and sparse.torch_version == "unknown"
    assert "extra" not in sparse.to_dict()


def test_provenance_changes_content_and_environment() -> None:
    from pytest_saeval.run.provenance import provenance_changes

    recorded = {"sae_xxh3": "0123456789abcdef", "model_xxh3": "m", "tokens_xxh3": "t", "device": "cpu",
                "torch_version": "2.12.0", "sae_lens_version": "6.0"}
    assert provenance_changes(recorded, recorded) == ([], [])
    content, environment = provenance_changes(
        recorded, {**recorded, "sae_xxh3": "fedcba9876543210", "tokens_xxh3": "u", "sae_lens_version": "6.1"})
    assert content == ["SAE weights (xxh3 0123456789ab -> fedcba987654)", "tokens (xxh3 t -> u)"]
    assert environment == ["SAE Lens 6.0 -> 6.1"]
    # a key missing (or None) on either side is not a change
    assert provenance_changes({"sae_xxh3": "a"}, {"model_xxh3": "b", "device": "cpu"}) == ([], [])
    assert provenance_changes({"device": None}, {"device": "cpu"}) == ([], [])


def test_notes_are_sorted_by_sae_and_name_every_changed_input(tmp_path: Path) -> None:
    from pytest_saeval.run.provenance import Provenance, provenance_notes
    from pytest_saeval.spec.baseline import Baseline

    old = {"sae_xxh3": "a" * 32, "model_xxh3": "b" * 32, "tokens_xxh3": "c" * 32, "device": "cpu"}
    baseline = Baseline(path=tmp_path / "b.json", values={"z": {"l0": 1.0}, "a": {"l0": 1.0}},
                        provenances={"z": old, "a": old})
    changed = Provenance.from_dict({**old, "sae_xxh3": "d" * 32, "model_xxh3": "e" * 32, "tokens_xxh3": "f" * 32})
    notes = provenance_notes(tmp_path / "s.yaml", {"z": changed, "a": Provenance.from_dict(old)}, baseline)
    (note,) = notes  # "a" is unchanged: no note
    assert note.loud and note.text.startswith(
        f"[z] the baseline {tmp_path / 'b.json'} was recorded on other SAE weights (xxh3 aaaaaaaaaaaa -> dddddddddddd), "
        "model weights (xxh3 bbbbbbbbbbbb -> eeeeeeeeeeee) and tokens (xxh3 cccccccccccc -> ffffffffffff)")
    two = provenance_notes("s.yaml", {"z": changed, "a": changed}, baseline)
    assert [n.sae_id for n in two] == ["a", "z"]
