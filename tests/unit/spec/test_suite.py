"""The suite dataclasses on their own: every value check, the derived properties and lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.errors import SuiteError
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
