"""Model folders that ship their own code are refused before transformers sees them, without a prompt."""

from __future__ import annotations

import builtins
import io
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.hf_folder import custom_code, load_folder
from tests.helpers import save_tiny_gpt2


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("m") / "model", n_layer=1, n_positions=16)


def _with_auto_map(model_dir: Path, tmp_path: Path, file: str, auto_map: dict[str, object]) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    data = json.loads((folder / file).read_text())
    data["auto_map"] = auto_map
    (folder / file).write_text(json.dumps(data))
    (folder / "custom.py").write_text(f"open({str(tmp_path / 'RAN')!r}, 'w').close()\n")
    return folder


def test_custom_code_is_found_in_config_and_tokenizer_config(model_dir: Path, tmp_path: Path) -> None:
    assert custom_code(model_dir, json.loads((model_dir / "config.json").read_text())) == []
    folder = _with_auto_map(model_dir, tmp_path, "tokenizer_config.json", {"AutoTokenizer": ["custom.Tok", None]})
    assert custom_code(folder, {"auto_map": {"AutoModel": "custom.M"}}) == [
        "config.json: AutoModel -> custom.M", "tokenizer_config.json: AutoTokenizer -> ['custom.Tok', None]"]


@pytest.mark.parametrize("file", ["config.json", "tokenizer_config.json"])
def test_a_folder_with_custom_code_is_refused_without_reading_stdin(model_dir: Path, tmp_path: Path, file: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _with_auto_map(model_dir, tmp_path, file, {"AutoConfig": "custom.C", "AutoModelForCausalLM": "custom.M"})
    stdin = io.StringIO("y\ny\ny\n")
    monkeypatch.setattr(sys, "stdin", stdin)

    def no_prompt(*args: object) -> str:
        raise AssertionError("asked on stdin")

    monkeypatch.setattr(builtins, "input", no_prompt)
    with pytest.raises(SourceError) as info:
        load_folder(folder, "cpu", torch.float32, "auto")
    assert "needs its own Python code to load" in str(info.value) and "it was not run" in str(info.value)
    assert "model.trust_remote_code: true" in info.value.fix
    assert stdin.read() == "y\ny\ny\n"  # not a byte was read
    assert not (tmp_path / "RAN").exists()
