"""saeval init's writing: the textual edit of the suite file, kept and updated gates, a new suite from
a model, SAEs and a token file, and init end to end on a tiny model."""

from __future__ import annotations

import difflib
import re
import textwrap
from pathlib import Path

import pytest

from pytest_saeval.errors import SaevalError, SuiteError
from pytest_saeval.propose import ProposedGate, SAEProposal
from pytest_saeval.run.plan import Overrides
from pytest_saeval.run.session import Session
from pytest_saeval.spec.editor import GateText, edit_suite_text
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.suite_init import init_suite, new_suite, write_proposed_suite
from tests.unit.init_helpers import SUITE, write_suite

# -- writing -----------------------------------------------------------------------------------


def _proposal(path, sae_id, **gates):
    return SAEProposal(path, sae_id, tuple(ProposedGate(m, tuple(e), 1.0, (0.9, 1.1)) for m, e in gates.items()))


def _changed_old_lines(old: str, new: str) -> list[str]:
    """Original lines that the edit removed or replaced."""
    a, b = old.splitlines(), new.splitlines()
    out = []
    for op, i1, i2, _, _ in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            out.extend(a[i1:i2])
    return out


def test_write_keeps_every_other_line_and_comment(tmp_path):
    path = write_suite(tmp_path)
    proposals = [
        _proposal(path, "first", l0=(">= 30", "<= 39"), kl_div_score=(">= 0.9",)),
        _proposal(path, "second", explained_variance=(">= 0.77",)),
    ]
    out = write_proposed_suite(path, proposals, tmp_path / "thresholds" / "new.yaml")
    new = out.read_text()
    assert path.read_text() == SUITE  # the original is untouched with --output
    assert _changed_old_lines(SUITE, new) == ['      l0:', '        - ">= 1"', '        - "<= 2"']
    assert '      l0: [">= 30", "<= 39"]  # measured 1 [0.9000, 1.100]\n' in new
    assert '      kl_div_score: ">= 0.9"  # measured 1 [0.9000, 1.100]\n' in new
    assert '    path: ../saes/second\n    gates:\n      explained_variance: ">= 0.77"' in new
    suite = load_suite(out)
    assert suite.sae("first").gate("explained_variance").text == ">= 0.99"
    assert suite.sae("first").gate("l0").text == ">= 30, <= 39"
    assert suite.sae("second").gate("frac_alive").text == ">= 0.5"  # defaults still merged
    assert suite.model.path == load_suite(path).model.path  # same folder: same resolved paths


def test_a_suite_that_is_a_symbolic_link_is_edited_through_it(tmp_path):
    """``saeval init thresholds/link.yaml``: the file the link names gets the gates; the link stays a link."""
    path = write_suite(tmp_path)
    link = path.with_name("link.yaml")
    link.symlink_to(path.name)
    proposals = [_proposal(link, "second", explained_variance=(">= 0.77",))]
    assert write_proposed_suite(link, proposals) == link
    assert link.is_symlink() and 'explained_variance: ">= 0.77"' in path.read_text()


def test_output_elsewhere_is_refused_when_relative_paths_would_name_other_files(tmp_path):
    path = write_suite(tmp_path)
    for folder in ("models/tiny", "saes/first", "data"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "data" / "eval_tokens.npy").write_bytes(b"")
    proposals = [_proposal(path, "first", l0=(">= 30",))]
    target = tmp_path / "elsewhere" / "new.yaml"
    target.parent.mkdir()
    with pytest.raises(SuiteError) as info:
        write_proposed_suite(path, proposals, target)
    assert not target.exists()  # refused before anything is written
    message = str(info.value)
    assert "model.path, data.tokens, saes[0].path are paths relative to the suite's folder" in message
    assert info.value.location.key == "--output" and f"--output {path.parent / 'new.yaml'}" in message
    assert write_proposed_suite(path, proposals, path.parent / "new.yaml").is_file()  # next to it: fine
    absolute = write_suite(tmp_path, SUITE.replace("../", f"{tmp_path}/"), name="abs.yaml")
    assert write_proposed_suite(absolute, [_proposal(absolute, "first", l0=(">= 30",))], target).is_file()
    assert load_suite(target).model.path == load_suite(absolute).model.path


def test_write_in_place_and_again_replaces_its_own_comment(tmp_path):
    path = write_suite(tmp_path)
    write_proposed_suite(path, [_proposal(path, "second", explained_variance=(">= 0.77",))])
    again = SAEProposal(path, "second", (ProposedGate("explained_variance", (">= 0.7",), 0.75, None),))
    write_proposed_suite(path, [again])
    text = path.read_text()
    assert text.count("explained_variance:") == 2
    assert '      explained_variance: ">= 0.7"  # measured 0.7500\n' in text
    assert "0.77" not in text


def test_a_hand_written_comment_on_a_replaced_gate_stays(tmp_path):
    path = write_suite(tmp_path)
    out = write_proposed_suite(path, [_proposal(path, "first", explained_variance=(">= 0.7",))])
    assert '      explained_variance: ">= 0.7"   # too strict on purpose\n' in out.read_text()


@pytest.mark.parametrize("gates_text", ["gates:", "gates: ~", "gates: {}", 'gates: {mse: "<= 4"}  # flow'])
def test_empty_null_and_flow_gate_blocks(tmp_path, gates_text):
    text = SUITE.replace("    path: ../saes/second\n", f"    path: ../saes/second\n    {gates_text}\n")
    path = write_suite(tmp_path, text)
    out = write_proposed_suite(path, [_proposal(path, "second", l0=(">= 3", "<= 9"), mse=("<= 2",))])
    new = out.read_text()
    suite = load_suite(out)
    assert suite.sae("second").gate("l0").text == ">= 3, <= 9"
    assert suite.sae("second").gate("mse").text == "<= 2"
    assert "# Demo thresholds: reviewed by the team." in new and "# team-wide" in new
    if "flow" in gates_text:
        assert "    gates:  # flow\n" in new


def test_crlf_files_stay_crlf(tmp_path):
    path = write_suite(tmp_path, SUITE.replace("\n", "\r\n"))
    out = write_proposed_suite(path, [_proposal(path, "second", l0=(">= 3",))])
    raw = out.read_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert load_suite(out).sae("second").gate("l0").text == ">= 3"


def test_file_without_trailing_newline(tmp_path):
    text = SUITE.replace("\ndefaults:\n  gates:\n    frac_alive: \">= 0.5\"   # team-wide\n", "")
    path = write_suite(tmp_path, text.rstrip("\n"))
    out = write_proposed_suite(path, [_proposal(path, "second", l0=(">= 3",))])
    assert load_suite(out).sae("second").gate("l0").text == ">= 3"


def test_flow_style_entry_and_unknown_id_are_errors(tmp_path):
    path = write_suite(tmp_path, SUITE.replace("  - id: second\n    path: ../saes/second\n",
                                          "  - {id: second, path: ../saes/second}\n"))
    with pytest.raises(SuiteError, match="flow style") as info:
        write_proposed_suite(path, [_proposal(path, "second", l0=(">= 3",))])
    assert info.value.location.line == 22
    with pytest.raises(SuiteError, match="no SAE entry with id 'third'"):
        edit_suite_text(SUITE, {"third": [GateText("l0", '">= 3"', "measured 3")]})


def test_proposals_for_other_files_are_ignored(tmp_path):
    path = write_suite(tmp_path)
    other = write_suite(tmp_path, name="other.yaml")
    out = write_proposed_suite(path, [_proposal(other, "second", l0=(">= 3",))], tmp_path / "thresholds" / "n.yaml")
    assert out.read_text() == SUITE


# -- end to end: saeval init on a tiny model ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_setup():
    import torch

    from tests.helpers import build_tiny_sae, tiny_hooked_transformer

    model = tiny_hooked_transformer(n_ctx=16)
    saes = {
        "first": build_tiny_sae(seed=1, hook_name="blocks.1.hook_resid_pre", d_sae=48),
        "second": build_tiny_sae(seed=2, architecture="topk", hook_name="blocks.0.hook_resid_post", d_sae=48),
    }
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, model.cfg.d_vocab, (12, 16), generator=gen)
    tokens[:, 0] = 0
    return model, saes, tokens


class _OverridingSession(Session):
    """A session that evaluates the tiny objects instead of what the suites name (as the fixtures' overrides)."""

    def __init__(self, overrides: Overrides) -> None:
        super().__init__()
        self.overrides = overrides

    def run(self, suites, selected=None, overrides=None):
        return super().run(suites, selected, overrides or self.overrides)


@pytest.fixture(scope="module")
def session(tiny_setup) -> Session:
    """One session for the module: it keeps each SAE's result, so later runs reuse the first evaluation."""
    model, saes, tokens = tiny_setup
    return _OverridingSession(Overrides(model=model, saes=saes, tokens=tokens))


def test_init_keeps_reviewed_gates_by_default(tmp_path, session):
    path = write_suite(tmp_path)
    new_path = tmp_path / "thresholds" / "proposed.yaml"
    written, proposals = init_suite(path, output=new_path, session=session)
    assert written == new_path and path.read_text() == SUITE
    new_text = new_path.read_text()
    assert _changed_old_lines(SUITE, new_text) == []  # only additions: every reviewed line stays
    assert 'explained_variance: ">= 0.99"   # too strict on purpose' in new_text
    first = {g.metric: g for g in proposals[0].gates}
    assert first["explained_variance"].existing == (">= 0.99",)
    suite = load_suite(new_path)
    assert suite.sae("first").gate("l0").text == ">= 1, <= 2"
    assert suite.sae("first").gate("kl_div_score") is not None  # new gates are added
    assert suite.sae("second").gate("frac_alive").text == ">= 0.5"  # the team-wide default is kept too


def test_init_update_gates_proposes_a_suite_that_passes_on_its_own_run(tmp_path, session):
    path = write_suite(tmp_path)
    first_run = session.run([load_suite(path)])[0]
    assert not first_run.passed  # explained_variance >= 0.99 and l0 in [1, 2] fail on random SAEs

    new_path = tmp_path / "thresholds" / "proposed.yaml"
    written, proposals = init_suite(path, output=new_path, session=session, update_gates=True)
    assert written == new_path
    assert path.read_text() == SUITE
    assert {p.sae_id for p in proposals} == {"first", "second"}
    assert all(len(p.gates) >= 6 for p in proposals)
    new_text = new_path.read_text()
    assert _changed_old_lines(SUITE, new_text) == [
        '      l0:', '        - ">= 1"', '        - "<= 2"', '      explained_variance: ">= 0.99"   # too strict on purpose']
    for comment in ("# Demo thresholds: reviewed by the team.", "# a local folder", "# the layer-1 SAE",
                    "# the second SAE has no gates yet", "# team-wide", "# too strict on purpose"):
        assert comment in new_text

    suite = load_suite(new_path)
    rerun = session.run([suite])[0]
    assert rerun.checks and rerun.passed, [c.message for c in rerun.checks if not c.passed]
    assert {c.gate.metric for c in rerun.checks if c.sae_id == "second"} >= {"l0", "explained_variance", "frac_alive"}
    # a measured interval went into the comments
    assert "# measured" in new_text and "[" in new_text.split("# measured", 1)[1].splitlines()[0]


def test_init_ignores_a_missing_baseline(tmp_path, session):
    text = SUITE.replace('explained_variance: ">= 0.99"', 'ce_loss_score: ">= baseline - 0.01"')
    text = text.replace("saes:\n", "baseline: ../baselines/missing.json\nsaes:\n")
    path = write_suite(tmp_path, text)
    _, proposals = init_suite(path, session=session, metrics=("l0",))
    assert proposals[0].skipped == ("ce_loss_score: relative to the baseline, kept as written",)
    assert 'ce_loss_score: ">= baseline - 0.01"' in path.read_text()
    # only the second SAE's l0 is new (the first has one; frac_alive comes from defaults)
    assert textwrap.dedent(path.read_text()).count("# measured") == 1


# -- a new suite ----------------------------------------------------------------------------------


def test_new_suite_writes_every_key_with_its_default_and_fits_the_token_file(tmp_path):
    import numpy as np

    root = tmp_path / "repo"
    (root / "models" / "tiny").mkdir(parents=True)
    (root / "saes" / "layer0").mkdir(parents=True)
    (root / "saes" / "layer1").mkdir(parents=True)
    np.save(root / "tokens.npy", np.ones((40, 24), dtype=np.int32))
    (root / "pyproject.toml").write_text("")
    out = new_suite(root / "thresholds" / "new.yaml", model=root / "models" / "tiny",
                    saes=[root / "saes" / "layer0", root / "saes" / "layer1"], tokens=root / "tokens.npy")
    text = out.read_text()
    assert "  path: ../models/tiny" in text and "  tokens: ../tokens.npy" in text
    for key in ("device: auto", "dtype: float32", "exclude_special_tokens: true", "gate_mode: point",
                "# baseline: baselines/new.json"):
        assert key in text
    assert all("#" in line for line in text.splitlines() if line.startswith("  ") and ":" in line
               and not line.startswith(("  - id", "    ")))  # every model/data key carries a comment
    suite = load_suite(out)
    assert [s.id for s in suite.saes] == ["layer0", "layer1"]
    assert all(not s.gates for s in suite.saes)
    # 40 rows of 24: rows of 24 tokens, 16 rows a batch, 40 // 16 = 2 batches of each kind
    assert (suite.data.context_size, suite.data.batch_size_prompts) == (24, 16)
    assert (suite.data.n_reconstruction_batches, suite.data.n_sparsity_batches) == (2, 2)
    assert suite.data.rows_needed <= 40
    with pytest.raises(SuiteError, match="exists already") as info:
        new_suite(out, model=root / "models" / "tiny", saes=[root / "saes" / "layer0"], tokens=root / "tokens.npy")
    assert "saeval init" in info.value.fix
    assert out.read_text() == text


def test_new_suite_writes_paths_outside_the_project_absolute(tmp_path, monkeypatch):
    import numpy as np

    root, elsewhere = tmp_path / "repo", tmp_path / "shared"
    (root / "saes" / "layer0").mkdir(parents=True)
    (elsewhere / "models" / "tiny").mkdir(parents=True)
    np.save(elsewhere / "tokens.npy", np.ones((40, 24), dtype=np.int32))
    (root / "pytest.ini").write_text("[pytest]\n")
    monkeypatch.chdir(root)  # given as the user typed them: relative to the current folder
    out = new_suite(Path("thresholds/new.yaml"), model=elsewhere / "models" / "tiny",
                    saes=[Path("saes/layer0")], tokens=Path("../shared/tokens.npy"))
    text = out.read_text()
    assert f"  path: {(elsewhere / 'models' / 'tiny').as_posix()}" in text
    assert f"  tokens: {(elsewhere / 'tokens.npy').as_posix()}" in text
    assert "    path: ../saes/layer0" in text
    suite = load_suite(out)
    assert suite.model.path == elsewhere / "models" / "tiny" and suite.saes[0].path == root / "saes" / "layer0"

    # without a project marker, the current folder is the project
    (root / "pytest.ini").unlink()
    text = new_suite(Path("thresholds/other.yaml"), model=root / "saes", saes=[root / "saes" / "layer0"],
                     tokens=elsewhere / "tokens.npy").read_text()
    assert re.search(r"^  path: \.\./saes +#", text, re.M), text
    assert f"  tokens: {(elsewhere / 'tokens.npy').as_posix()}" in text
    # ... unless the new file is outside it: then its own folder is
    text = new_suite(elsewhere / "new.yaml", model=elsewhere / "models" / "tiny", saes=[root / "saes" / "layer0"],
                     tokens=Path("../shared/tokens.npy")).read_text()
    assert re.search(r"^  path: models/tiny +#", text, re.M) and "  tokens: tokens.npy " in text, text
    assert f"    path: {(root / 'saes' / 'layer0').as_posix()}\n" in text


def test_new_suite_gives_two_saes_with_one_folder_name_two_ids(tmp_path):
    import numpy as np

    for sub in ("a/sae", "b/sae"):
        (tmp_path / sub).mkdir(parents=True)
    np.save(tmp_path / "t.npy", np.ones((4, 8), dtype=np.int64))
    out = new_suite(tmp_path / "s.yaml", model=tmp_path / "a", saes=[tmp_path / "a/sae", tmp_path / "b/sae"],
                    tokens=tmp_path / "t.npy")
    ids = [s.id for s in load_suite(out).saes]
    assert len(set(ids)) == 2, ids


def test_new_suite_with_a_bad_token_file_writes_nothing(tmp_path):
    import numpy as np

    np.save(tmp_path / "t.npy", np.ones(8, dtype=np.int64))
    with pytest.raises(SaevalError, match="t.npy' holds an array of shape \\[8\\]; it must be 2-D"):
        new_suite(tmp_path / "s.yaml", model=tmp_path, saes=[tmp_path], tokens=tmp_path / "t.npy")
    assert not (tmp_path / "s.yaml").exists()


def test_new_suite_gives_a_run_folder_one_entry_per_checkpoint(tmp_path):
    import numpy as np

    run = tmp_path / "checkpoints" / "run1"
    for hook in ("layers.6", "layers.6.mlp"):  # a sparsify run: one checkpoint folder per hook
        (run / hook).mkdir(parents=True)
        (run / hook / "cfg.json").write_text("{}")
        (run / hook / "sae.safetensors").write_bytes(b"")
    (tmp_path / "model").mkdir()
    np.save(tmp_path / "tokens.npy", np.ones((8, 16), dtype=np.int64))
    out = new_suite(tmp_path / "new.yaml", model=tmp_path / "model", saes=[run], tokens=tmp_path / "tokens.npy")
    suite = load_suite(out)
    assert [s.id for s in suite.saes] == ["layers.6", "layers.6.mlp"]
    assert [s.path for s in suite.saes] == [run / "layers.6", run / "layers.6.mlp"]
