"""``saeval run`` on checkpoints of the other trainers: EleutherAI sparsify folders (written by the real
package, one fitted by hand and one trained by sparsify's own Trainer) and dictionary_learning trainer
folders (written in its format), next to an SAE Lens folder, on the bundled tiny model; bad folders as
bad input; and the docs' adapter example through a factory.

The SAEs are fitted on rows 416-511 of the bundled token file; the suites evaluate rows 0-31.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_saeval.cli import main
from tests.checkpoints import DL_TOPK, dl_state, fitted_sparse_coder, hook_activations, save_dl_trainer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "examples" / "tiny"
DOCS = ROOT / "docs" / "sae-sources.md"
K = 16

DL_ENTRIES = {  # id -> (dict_class, run folder, trainer folder)
    "dl-relu": ("AutoEncoder", "resid_post_layer_1", "trainer_0"),
    "dl-topk": ("AutoEncoderTopK", "resid_post_layer_1", "trainer_1"),
    "dl-batchtopk": ("BatchTopKSAE", "resid_post_layer_1", "trainer_2"),
    "dl-gated": ("GatedAutoEncoder", "resid_post_layer_1", "trainer_3"),
    "dl-jumprelu": ("JumpReluAutoEncoder", "mlp_out_layer_0", "trainer_0"),
}
EXPECTED = {  # id -> (SAE Lens architecture, hook)
    "eai-resid": ("topk", "blocks.1.hook_resid_post"),
    "eai-mlp": ("topk", "blocks.0.hook_mlp_out"),
    "dl-relu": ("standard", "blocks.1.hook_resid_post"),
    "dl-topk": ("topk", "blocks.1.hook_resid_post"),
    "dl-batchtopk": ("jumprelu", "blocks.1.hook_resid_post"),
    "dl-gated": ("gated", "blocks.1.hook_resid_post"),
    "dl-jumprelu": ("jumprelu", "blocks.0.hook_mlp_out"),
    "saelens-topk": ("topk", "blocks.1.hook_resid_pre"),
}


@pytest.fixture(scope="module")
def tiny_model() -> Any:
    from pytest_saeval.sources.models import load_model

    return load_model(path=TINY / "model", device="cpu")


@pytest.fixture(scope="module")
def calibration(tiny_model: Any) -> dict[str, Any]:
    import torch

    rows = torch.from_numpy(np.load(TINY / "eval_tokens.npy")[416:512]).long()
    return {hook: hook_activations(tiny_model, hook, rows) for hook in ("blocks.1.hook_resid_post", "blocks.0.hook_mlp_out")}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, calibration: dict[str, Any]) -> Path:
    """A sparsify run folder (``h.1``, ``h.0.mlp``) and a dictionary_learning sweep, as their trainers lay them out."""
    root = tmp_path_factory.mktemp("checkpoints")
    resid, mlp = calibration["blocks.1.hook_resid_post"], calibration["blocks.0.hook_mlp_out"]
    fitted_sparse_coder(resid, num_latents=512, k=K, seed=0).save_to_disk(root / "eai-run" / "h.1")
    fitted_sparse_coder(mlp, num_latents=512, k=K, seed=1).save_to_disk(root / "eai-run" / "h.0.mlp")
    for i, (dict_class, run, trainer) in enumerate(DL_ENTRIES.values()):
        acts = mlp if run.startswith("mlp") else resid
        save_dl_trainer(root / "dl-sweep" / run / trainer, dict_class, dl_state(dict_class, 128, 512, k=K, seed=i, acts=acts),
                        layer=int(run[-1]), submodule_name=run, k=K if dict_class in DL_TOPK else None)
    return root


def _suite(path: Path, entries: list[str], gates: str) -> Path:
    text = textwrap.dedent(f"""\
        model:
          path: {TINY / 'model'}
          device: cpu
        data:
          tokens: {TINY / 'eval_tokens.npy'}
          context_size: 128
          batch_size_prompts: 8
          n_reconstruction_batches: 2
          n_sparsity_batches: 4
        defaults:
          gates:
        """) + textwrap.indent(gates, "    ") + "saes:\n" + "".join(textwrap.indent(e, "  ") for e in entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GATES = textwrap.dedent("""\
    explained_variance: ">= 0.8"
    kl_div_score: ">= 0.6"
    ce_loss_score: ">= 0.6"
    frac_alive: ">= 0.9"
    l0: [">= 4", "<= 40"]
    """)
"""Gates for SAEs fitted in a second, not trained: the global-threshold BatchTopK fit keeps least of the
model's behaviour (KL-div score about 0.7; the top-k fits about 0.98)."""


def _entries(checkpoints: Path) -> list[str]:
    entries = [f"- id: eai-resid\n  path: {checkpoints / 'eai-run' / 'h.1'}\n",
               f"- id: eai-mlp\n  path: {checkpoints / 'eai-run' / 'h.0.mlp'}\n"]
    entries += [f"- id: {i}\n  path: {checkpoints / 'dl-sweep' / run / trainer}\n"
                for i, (_, run, trainer) in DL_ENTRIES.items()]
    entries.append(f"- id: saelens-topk\n  path: {TINY / 'saes' / 'layer1-res-topk'}\n")
    return entries


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["run", *args, "--no-cache", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_saeval_run_gates_each_format(tmp_path, capsys, checkpoints):
    suite = _suite(tmp_path / "formats.yaml", _entries(checkpoints), GATES)
    code, out, err = _run(capsys, str(suite), "--output-dir", str(tmp_path / "out"))
    assert code == 0, out + err
    assert "40 passed, 0 failed" in out
    records = {r["unique_id"]: r for r in json.loads((tmp_path / "out" / "all_eval_results.json").read_text())}
    assert set(records) == set(EXPECTED)
    for sae_id, (architecture, hook) in EXPECTED.items():
        cfg = records[sae_id]["sae_cfg"]
        assert (cfg["architecture"], cfg["metadata"]["hook_name"]) == (architecture, hook), sae_id
        metrics = records[sae_id]["metrics"]
        assert metrics["explained_variance"] >= 0.8 and metrics["l0"] <= 40, sae_id
    for sae_id in ("eai-resid", "eai-mlp", "dl-topk"):
        assert records[sae_id]["metrics"]["l0"] <= K


def test_a_gate_the_checkpoint_misses_fails(tmp_path, capsys, checkpoints):
    suite = _suite(tmp_path / "strict.yaml", _entries(checkpoints)[:1], 'explained_variance: ">= 0.999"\n')
    code, out, _ = _run(capsys, str(suite))
    assert code == 1
    assert re.search(r"eai-resid\s+explained_variance\s+0\.9\d+.*>= 0\.999\s+FAIL", out)


def test_an_unmappable_hookpoint_is_bad_input_until_hook_name(tmp_path, capsys, checkpoints):
    import shutil

    folder = shutil.copytree(checkpoints / "eai-run" / "h.1", tmp_path / "run" / "h.1.ln_2")
    suite = _suite(tmp_path / "hook.yaml", [f"- id: eai\n  path: {folder}\n"], 'l0: "<= 16"\n')
    code, out, err = _run(capsys, str(suite))
    assert code == 2
    line = next(i for i, t in enumerate(suite.read_text().splitlines(), start=1) if "path:" in t and "h.1.ln_2" in t)
    assert f"saeval: error: {suite}:{line}: saes[0].path: the sparsify checkpoint" in err
    assert "hookpoint 'h.1.ln_2'" in err and "Fix: add hook_name:" in err and "Traceback" not in err
    # the same folder with the hook it reads named in the suite
    _suite(suite, [f"- id: eai\n  path: {folder}\n  hook_name: blocks.1.hook_resid_post\n"], 'l0: "<= 16"\n')
    code, out, err = _run(capsys, str(suite))
    assert code == 0, out + err


def test_a_symlinked_checkpoint_folder_keeps_its_hook(tmp_path, capsys, checkpoints):
    """``path:`` a link named otherwise (``link_sp -> eai-run/h.1``): the hook comes from the folder it leads to."""
    (tmp_path / "link_sp").symlink_to(checkpoints / "eai-run" / "h.1")
    suite = _suite(tmp_path / "thresholds" / "link.yaml", ["- id: eai\n  path: ../link_sp\n"], 'l0: "<= 16"\n')
    code, out, err = _run(capsys, str(suite), "--output-dir", str(tmp_path / "out"))
    assert code == 0, out + err
    [record] = json.loads((tmp_path / "out" / "all_eval_results.json").read_text())
    assert record["sae_cfg"]["metadata"]["hook_name"] == "blocks.1.hook_resid_post"


def test_a_hook_the_model_lacks_names_the_folder_it_came_from(tmp_path, capsys, checkpoints):
    """``h.5`` on the 2-layer model: the hook came from the folder name (no cfg.json, no hook_name the user
    wrote), and the fix is a hook_name: in the entry."""
    import shutil

    folder = shutil.copytree(checkpoints / "eai-run" / "h.1", tmp_path / "run" / "h.5")
    suite = _suite(tmp_path / "deep.yaml", [f"- id: eai\n  path: {folder}\n"], 'l0: "<= 16"\n')
    code, _, err = _run(capsys, str(suite))
    assert code == 2
    line = next(i for i, t in enumerate(suite.read_text().splitlines(), start=1) if "path:" in t and "h.5" in t)
    assert f"saeval: error: {suite}:{line}: saes[0].path: the sparsify checkpoint '{folder}' reads " \
           "blocks.5.hook_resid_post, mapped from the folder name 'h.5', but the model has no such hook" in err
    assert "Fix: add hook_name: to the SAE entry" in err and "cfg.json" not in err and "Traceback" not in err


def test_a_run_folder_is_bad_input(tmp_path, capsys, checkpoints):
    suite = _suite(tmp_path / "run.yaml", [f"- id: eai\n  path: {checkpoints / 'eai-run'}\n"], 'l0: "<= 16"\n')
    code, _, err = _run(capsys, str(suite))
    assert code == 2
    assert "is a run folder holding 2 checkpoint folder(s) (h.0.mlp, h.1)" in err and "saes[0].path" in err


_TRAIN = """
import sys, numpy as np, torch
from datasets import Dataset
from transformers import AutoModelForCausalLM
from sparsify import SaeConfig, TrainConfig, Trainer

torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
rows = np.load(sys.argv[2])[448:464].astype("int64").tolist()
dataset = Dataset.from_dict({"input_ids": rows}).with_format("torch")
cfg = TrainConfig(SaeConfig(expansion_factor=2, k=8), batch_size=4, hookpoints=["h.1"], log_to_wandb=False,
                  save_dir=sys.argv[3], run_name="run", save_every=10_000)
Trainer(cfg, dataset, model).fit()
"""


def test_a_run_trained_by_sparsify_itself(tmp_path, capsys):
    """A few steps of sparsify's own Trainer on the bundled model (in a child process: it changes global
    torch settings): its run folder's checkpoint loads and is gated."""
    subprocess.run([sys.executable, "-c", _TRAIN, str(TINY / "model"), str(TINY / "eval_tokens.npy"), str(tmp_path)],
                   check=True, capture_output=True, timeout=600)
    folder = tmp_path / "run" / "h.1"
    assert (folder / "cfg.json").is_file() and (folder / "sae.safetensors").is_file()
    suite = _suite(tmp_path / "trained.yaml", [f"- id: trained\n  path: {folder}\n"],
                   'l0: [">= 1", "<= 8"]\nexplained_variance: "> 0"\n')
    code, out, err = _run(capsys, str(suite), "--output-dir", str(tmp_path / "out"))
    assert code == 0, out + err
    [record] = json.loads((tmp_path / "out" / "all_eval_results.json").read_text())
    assert record["sae_cfg"]["d_sae"] == 256 and record["sae_cfg"]["metadata"]["hook_name"] == "blocks.1.hook_resid_post"


# ------------------------------------------------------------------------------------------------
# the adapter example of docs/sae-sources.md


def _docs_adapter(folder: Path) -> Path:
    """The docs page's adapter module, written to ``folder/saes_adapter.py`` as a user would copy it."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    [code] = [b for b in blocks if "class SparseCoderAdapter" in b]
    path = folder / "saes_adapter.py"
    path.write_text(code)
    return path


def test_the_docs_adapter_gates_a_groupmax_coder(tmp_path, capsys, calibration):
    resid = calibration["blocks.1.hook_resid_post"]
    coder = fitted_sparse_coder(resid, num_latents=512, k=K, activation="groupmax", seed=3)
    coder.save_to_disk(tmp_path / "checkpoints" / "run" / "layers.1")
    _docs_adapter(tmp_path)
    suite = _suite(tmp_path / "adapter.yaml", ["- id: groupmax-layer1\n  factory: saes_adapter.py:load\n"],
                   'explained_variance: ">= 0.8"\nl0: "<= 16"\n')
    code, out, err = _run(capsys, str(suite))
    assert code == 0, out + err
    assert "2 passed, 0 failed" in out


def test_the_docs_adapter_equals_path_loading(tmp_path, tiny_model, checkpoints):
    """Wrapping sparsify's own TopK coder with the docs' adapter gives the metrics ``path:`` gives."""
    import importlib.util

    import torch
    from sparsify import SparseCoder

    from pytest_saeval import EvalSettings, evaluate
    from pytest_saeval.sources.saes import load_sae_folder

    spec = importlib.util.spec_from_file_location("saes_adapter_under_test", _docs_adapter(tmp_path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = checkpoints / "eai-run" / "h.1"
    adapter = module.SparseCoderAdapter(SparseCoder.load_from_disk(folder), hook_name="blocks.1.hook_resid_post")
    tokens = torch.from_numpy(np.load(TINY / "eval_tokens.npy")[:16]).long()
    settings = EvalSettings(batch_size_prompts=8, n_reconstruction_batches=2, n_sparsity_batches=2,
                            exclude_special_tokens=True)
    results = evaluate(tiny_model, {"adapter": adapter, "path": load_sae_folder(folder)}, tokens, settings)
    ours, theirs = results["adapter"].metrics, results["path"].metrics
    assert set(ours) == set(theirs)
    for name in ours:
        assert ours[name] == pytest.approx(theirs[name], rel=1e-5, abs=1e-7, nan_ok=True), name
