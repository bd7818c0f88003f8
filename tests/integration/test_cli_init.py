"""``saeval init``: one evaluation of a suite, proposed gates written into a copy (``--output``) or the
file itself, every other line kept; the proposed suite then passes ``saeval run`` on the same inputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_saeval.cli import main
from pytest_saeval.spec.loader import load_suite
from tests.integration.badinput.cases import Assets
from tests.integration.cli_helpers import NO_CACHE, run, write_suite


def _init(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["init", *args, "--no-progress"])
    out, err = capsys.readouterr()
    return rc, out, err


def _commented(path: Path) -> str:
    text = path.read_text()
    text = text.replace("model:\n", "# reviewed thresholds\nmodel:\n", 1)
    path.write_text(text.replace("  - id: topk\n", "  - id: topk  # the layer-1 SAE\n"))
    return path.read_text()


def test_init_keeps_reviewed_gates_and_update_gates_replaces_them(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path / "s.yaml", tiny, gates0='l0: "<= 0.5"', gates1='explained_variance: ">= 0.999"')
    original = _commented(suite)
    assert run(capsys, str(suite), *NO_CACHE)[0] == 1  # too strict on purpose

    kept = tmp_path / "kept.yaml"
    rc, out, err = _init(capsys, str(suite), "--output", str(kept))
    assert rc == 0 and err == "", out + err
    assert out.splitlines()[-1] == f"saeval: wrote {kept}"
    assert f"{suite} [sae0]" in out and f"{suite} [topk]" in out
    assert re.search(r'^  l0: "<= 0.5" kept \(proposed .*; measured .*; --update-gates replaces it\)$', out, re.M), out
    assert re.search(r'^  kl_div_score: \(none\) -> ">= [-0-9.]+" \(measured ', out, re.M), out
    assert suite.read_text() == original  # --output leaves the suite file alone
    text = kept.read_text()
    assert 'l0: "<= 0.5"' in text and 'explained_variance: ">= 0.999"' in text  # reviewed gates stay
    assert "kl_div_score:" in text  # new gates are added
    assert run(capsys, str(kept), *NO_CACHE)[0] == 1

    proposed = tmp_path / "proposed.yaml"
    rc, out, err = _init(capsys, str(suite), "--output", str(proposed), "--update-gates")
    assert rc == 0 and err == "", out + err
    assert re.search(r'^  l0: "<= 0.5" -> ">= [0-9.]+", "<= [0-9.]+" \(measured [0-9.]+ \[', out, re.M), out
    new = proposed.read_text()
    assert "# reviewed thresholds\n" in new and "  - id: topk  # the layer-1 SAE\n" in new
    assert 'l0: "<= 0.5"' not in new and 'explained_variance: ">= 0.999"' not in new
    loaded = load_suite(proposed)
    for sae in loaded.saes:
        assert {"l0", "explained_variance"} <= set(sae.metrics), sae.metrics
    rc, out, err = run(capsys, str(proposed), *NO_CACHE)
    assert rc == 0, out + err
    assert "FAILED" not in out


def _bound(path: Path, sae: str, metric: str) -> float:
    gate = load_suite(path).sae(sae).gate(metric)
    assert gate is not None
    return float(gate.bounds[0].text)


def test_the_margins_are_set_from_the_command_line(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "s.yaml", tiny, gates0='l0: ">= 0"', second=False)
    cache = ("--cache-dir", str(tmp_path / "cache"))
    default, loose = tmp_path / "default.yaml", tmp_path / "loose.yaml"
    assert _init(capsys, str(suite), "-o", str(default), *cache)[0] == 0
    assert _init(capsys, str(suite), "-o", str(loose), "--margin-k", "8", "--margin-rel", "0.2", *cache)[0] == 0
    assert _bound(loose, "sae0", "explained_variance") < _bound(default, "sae0", "explained_variance")
    rc, out, err = _init(capsys, str(suite), "--margin-abs", "0")
    assert rc == 2 and out == "" and "--margin-abs" in err and "Fix: " in err and len(err.splitlines()) == 1
    rc, _, err = _init(capsys, str(suite), "--margin-k", "-1")
    assert rc == 2 and "--margin-k" in err
    # no upper bound used to mean an OverflowError (exit 3) or a 300-digit gate the loader refuses
    for flag, value, rule in (("--margin-rel", "1e308", "from 0 to 10"), ("--margin-range-rel", "1e308", "from 0 to 10"),
                              ("--margin-k", "1e308", "from 0 to 100"), ("--margin-abs", "1.7e308", "from 1e-9 to 1e9")):
        new = tmp_path / "new.yaml"
        rc, out, err = _init(capsys, str(suite), "-o", str(new), flag, value)
        assert rc == 2 and out == "" and len(err.splitlines()) == 1, err
        assert err.startswith(f"saeval: error: {flag}: {flag} must be a number {rule}, got ") and "Fix: " in err, err
        assert not new.exists()
    help_text = _help(capsys)
    assert "m = max(k * half-width, abs, rel * |value|)" in " ".join(help_text.split())


def _help(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["init", "--help"]) == 0
    return capsys.readouterr().out


def test_init_reads_and_fills_the_results_cache(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_saeval.run.evaluation as evaluation
    import pytest_saeval.store.cached as cached

    passes: list[int] = []  # engine passes over the model (a cache hit makes none)
    for module in (evaluation, cached):
        real = module.run_pass
        monkeypatch.setattr(module, "run_pass", lambda *a, _real=real, **k: passes.append(1) or _real(*a, **k))
    suite = write_suite(tmp_path / "s.yaml", tiny, second=False)
    cache = tmp_path / "cache"
    assert _init(capsys, str(suite), "-o", str(tmp_path / "a.yaml"), "--cache-dir", str(cache))[0] == 0
    assert len(passes) == 1 and any(cache.rglob("*"))
    assert _init(capsys, str(suite), "-o", str(tmp_path / "b.yaml"), "--cache-dir", str(cache))[0] == 0
    assert len(passes) == 1  # the second init read the cache
    assert (tmp_path / "a.yaml").read_text() == (tmp_path / "b.yaml").read_text()
    assert run(capsys, str(tmp_path / "a.yaml"), "--cache-dir", str(cache), "--no-progress")[0] == 0
    assert len(passes) == 1  # and so does saeval run
    assert _init(capsys, str(suite), "-o", str(tmp_path / "c.yaml"), "--no-cache")[0] == 0
    assert len(passes) == 2


def test_init_scaffolds_a_new_suite(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "thresholds" / "new.yaml"
    new.parent.mkdir()
    rc, out, err = _init(capsys, "--model", str(tiny.model), "--sae", str(tiny.sae), "--sae", str(tiny.sae_topk),
                         "--tokens", str(tiny.tokens), "-o", str(new), *NO_CACHE[:1])
    assert rc == 0 and err == "", out + err
    assert out.splitlines()[-1] == f"saeval: wrote {new}"
    text = new.read_text()
    assert "# A suite written by `saeval init`" in text and "device: auto" in text and "# baseline:" in text
    suite = load_suite(new)
    assert [s.id for s in suite.saes] == [tiny.sae.name, tiny.sae_topk.name]
    assert all({"explained_variance", "l0", "kl_div_score"} <= set(s.metrics) for s in suite.saes)
    assert suite.model.path == tiny.model.resolve() or suite.model.path.resolve() == tiny.model.resolve()
    rc, out, err = run(capsys, str(new), *NO_CACHE)
    assert rc == 0 and "FAILED" not in out, out + err
    rc, _, err = _init(capsys, "--model", str(tiny.model), "--sae", str(tiny.sae), "--tokens", str(tiny.tokens),
                       "-o", str(new))
    assert rc == 2 and "exists already" in err and new.read_text() == text


def test_init_scaffold_needs_every_part_and_leaves_nothing_behind(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _init(capsys, "--model", str(tiny.model), "--tokens", str(tiny.tokens))
    assert rc == 2 and out == "" and "init needs --sae, --output" in err and "Fix: " in err
    new = tmp_path / "new.yaml"
    rc, _, err = _init(capsys, "--model", str(tiny.model), "--sae", str(tmp_path), "--tokens", str(tiny.tokens),
                       "-o", str(new), *NO_CACHE[:1])
    assert rc == 2 and "holds no SAE checkpoint" in err, err
    assert not new.exists()  # a suite that could not be evaluated is not left behind


def test_init_edits_the_suite_in_place(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "s.yaml", tiny, second=False)
    before = _commented(suite)
    rc, out, _ = _init(capsys, str(suite))
    assert rc == 0 and out.splitlines()[-1] == f"saeval: wrote {suite}"
    after = suite.read_text()
    assert after != before and "# reviewed thresholds\n" in after and "# measured" in after
    assert run(capsys, str(suite), *NO_CACHE)[0] == 0


def test_init_on_a_bad_suite_is_bad_input(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "s.yaml", tiny, gates0='l00: ">= 0"')
    text = suite.read_text()
    rc, out, err = _init(capsys, str(suite))
    assert rc == 2 and out == ""
    assert err.startswith(f"saeval: error: {suite}:") and "unknown metric 'l00'" in err and len(err.splitlines()) == 1
    assert suite.read_text() == text
    rc, _, err = _init(capsys, str(tmp_path / "missing.yaml"))
    assert rc == 2 and "suite file not found" in err
