"""The suite dataclasses on their own: every value check, the derived properties and lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.settings import EvalSettings
from pytest_saeval.spec.gates import Gate, parse_gate
from pytest_saeval.spec.suite import DatasetSpec, DataSpec, ModelSpec, SAESpec, Suite


def test_dataclasses_validate_on_their_own(tmp_path: Path) -> None:
    """Built in code, the dataclasses run the same checks (and messages) as a suite file."""
    with pytest.raises(SuiteError, match="model needs one of name, path or factory"):
        ModelSpec()
    with pytest.raises(SuiteError, match="model has both 'name' and 'factory'.*keep exactly one of name, path or factory"):
        ModelSpec(name="gpt2", factory="a:b")
    with pytest.raises(SuiteError, match="model.device: device must be auto, cpu, cuda or cuda:N"):
        ModelSpec(name="gpt2", device="gpu")
    with pytest.raises(SuiteError, match="data needs one of tokens or dataset"):
        DataSpec()
    with pytest.raises(SuiteError, match="data.batch_size_prompts: batch_size_prompts must be >= 1"):
        DataSpec(tokens=Path("t.npy"), batch_size_prompts=0)
    with pytest.raises(SuiteError, match="data.dataset.streaming"):
        DatasetSpec(path="x", streaming="yes")  # type: ignore[arg-type]
    with pytest.raises(SuiteError, match="only contain"):
        SAESpec(id="a b", path=Path("x"))
    with pytest.raises(SuiteError, match="needs 'release'"):
        SAESpec(id="a", sae_id="x")
    with pytest.raises(SuiteError, match=r"saes\[a\].factory: saes\[a\] has both 'path' and 'factory'"):
        SAESpec(id="a", path=Path("x"), factory="a:b")
    with pytest.raises(SuiteError, match=r"saes\[2\].factory"):
        SAESpec(id="a", path=Path("x"), factory="a:b", index=2)
    sae = SAESpec(id="a", path=Path("x"))
    with pytest.raises(SuiteError, match="s.yaml: saes: saes is empty"):
        Suite(path=Path("s.yaml"), model=ModelSpec(name="gpt2"), data=DataSpec(tokens=Path("t")), saes=())
    with pytest.raises(SuiteError, match="duplicate SAE id"):
        Suite(path=Path("s.yaml"), model=ModelSpec(name="gpt2"), data=DataSpec(tokens=Path("t")), saes=(sae, sae))
    with pytest.raises(SuiteError, match="gate_mode must be point or interval"):
        Suite(path=Path("s.yaml"), model=ModelSpec(name="gpt2"), data=DataSpec(tokens=Path("t")), saes=(sae,),
              gate_mode="strict")


def _gate(metric: str, spec: str, line: int = 9) -> Gate:
    return parse_gate(metric, spec, line=line, key=f"saes[0].gates.{metric}")


def test_sources_kinds_and_paths() -> None:
    assert ModelSpec(name="gpt2").kind == "name"
    assert ModelSpec(path="models/tiny").kind == "path"  # type: ignore[arg-type]
    assert ModelSpec(factory="pkg.mod:make").kind == "factory"
    assert (ModelSpec(name="gpt2").device, ModelSpec(name="gpt2").dtype) == ("auto", "float32")
    data = DataSpec(tokens="t.npy")  # type: ignore[arg-type]
    assert data.kind == "tokens" and data.tokens == Path("t.npy")
    assert DataSpec(dataset=DatasetSpec(path="json")).kind == "dataset"
    assert SAESpec(id="a", path="x").path == Path("x")  # type: ignore[arg-type]
    assert SAESpec(id="a", release="r", sae_id="s").kind == "release"
    assert SAESpec(id="a", factory="m:f").kind == "factory"


def test_data_settings_and_rows_needed() -> None:
    data = DataSpec(tokens=Path("t.npy"), batch_size_prompts=4, n_reconstruction_batches=3, n_sparsity_batches=5,
                    exclude_special_tokens=[0, 2])  # type: ignore[arg-type]
    assert data.exclude_special_tokens == (0, 2)
    assert data.to_settings() == EvalSettings(batch_size_prompts=4, n_reconstruction_batches=3, n_sparsity_batches=5,
                                              exclude_special_tokens=(0, 2))
    assert data.rows_needed == 20


def test_line_of_a_key_falls_back_to_the_section_line() -> None:
    model = ModelSpec(name="gpt2", line=1, key_lines=(("name", 2), ("device", 3)))
    assert model.line_of("device") == 3 and model.line_of("dtype") == 1
    assert ModelSpec(name="gpt2").line_of("device") is None
    with pytest.raises(SuiteError) as info:
        ModelSpec(name="gpt2", device="gpu", line=1, key_lines=(("device", 3),))
    assert (info.value.location.line, info.value.location.key) == (3, "model.device")
    with pytest.raises(SuiteError) as info:
        DataSpec(tokens=Path("t"), context_size=0, line=4)
    assert (info.value.location.line, info.value.location.key) == (4, "data.context_size")


def test_sae_gates_lookup_and_duplicates() -> None:
    sae = SAESpec(id="a", path=Path("x"), gates=[_gate("l0", "<= 60"), _gate("mse", "<= 1")])  # type: ignore[arg-type]
    assert isinstance(sae.gates, tuple) and sae.metrics == ("l0", "mse")
    assert sae.gate("mse").text == "<= 1" and sae.gate("cossim") is None  # type: ignore[union-attr]
    with pytest.raises(SuiteError, match="two gates on l0") as info:
        SAESpec(id="a", path=Path("x"), index=0, gates=(_gate("l0", "<= 60", 9), _gate("l0", ">= 1", 11)))
    assert (info.value.location.line, info.value.location.key) == (11, "saes[0].gates")
    with pytest.raises(TypeError, match="must hold Gate objects"):
        SAESpec(id="a", path=Path("x"), gates=("l0: <= 60",))  # type: ignore[arg-type]
    assert SAESpec(id="a", path=Path("x"))._key("path") == "saes[a].path"  # no index: named by id


def test_suite_properties_and_lookup() -> None:
    a = SAESpec(id="layer-1", path=Path("a"), index=0, gates=(_gate("cossim", ">= baseline - 0.01"),))
    b = SAESpec(id="layer-2", path=Path("b"), index=1)
    suite = Suite(path="s.yaml", model=ModelSpec(name="gpt2"), data=DataSpec(tokens=Path("t")), saes=[a, b],  # type: ignore[arg-type]
                  baseline="b.json", key_lines=(("baseline", 5),))  # type: ignore[arg-type]
    assert suite.path == Path("s.yaml") and suite.baseline == Path("b.json") and suite.baseline_line == 5
    assert suite.saes == (a, b) and suite.sae_ids == ("layer-1", "layer-2") and suite.uses_baseline
    assert suite.sae("layer-2") is b
    with pytest.raises(SuiteError) as info:
        suite.sae("layer-3")
    assert str(info.value) == ("s.yaml: no SAE with id 'layer-3' in this suite (did you mean 'layer-2' or 'layer-1'?). "
                               "Fix: use one of layer-1, layer-2")
    plain = Suite(path=Path("s.yaml"), model=ModelSpec(name="gpt2"), data=DataSpec(tokens=Path("t")), saes=(b,))
    assert not plain.uses_baseline and plain.baseline_line is None and plain.gate_mode == "point"


def test_a_baseline_gate_needs_a_baseline_file() -> None:
    sae = SAESpec(id="a", path=Path("a"), index=0, gates=(_gate("cossim", ">= baseline - 0.01", 12),))
    with pytest.raises(SuiteError) as info:
        Suite(path=Path("s.yaml"), model=ModelSpec(name="gpt2"), data=DataSpec(tokens=Path("t")), saes=(sae,))
    message = str(info.value)
    assert message.startswith("s.yaml:12: saes[0].gates.cossim: gate '>= baseline - 0.01' compares with the baseline")
    assert "add `baseline: baselines/<name>.json`" in message


def test_duplicate_ids_name_the_first_entry() -> None:
    first = SAESpec(id="a", path=Path("a"), index=0, line=4)
    again = SAESpec(id="a", path=Path("b"), index=1, line=7, key_lines=(("id", 7),))
    with pytest.raises(SuiteError) as info:
        Suite(path=Path("s.yaml"), model=ModelSpec(name="gpt2"), data=DataSpec(tokens=Path("t")), saes=(first, again))
    assert str(info.value).startswith("s.yaml:7: saes[1].id: duplicate SAE id 'a' (also saes[0] on line 4)")
