"""Per-SAE output file names: different SAEs never share a file, whatever their ids and suite names."""

from __future__ import annotations

import itertools
import random

from pytest_saeval.report.files import per_sae_file_names


def _records(pairs: list[tuple[str, str]]) -> list[dict[str, object]]:
    return [{"eval_cfg": {"suite": suite}, "unique_id": uid} for suite, uid in pairs]


def _names(pairs: list[tuple[str, str]]) -> list[str]:
    return per_sae_file_names(_records(pairs))


def test_ids_that_used_to_collide_get_their_own_files() -> None:
    names = _names([("t/demo.yaml", uid) for uid in ("x/y", "x_y", "x_y_", "x-y", "x.y", "x%2Fy")])
    assert names == ["demo__x%2Fy.json", "demo__x_y.json", "demo__x_y_.json", "demo__x-y.json", "demo__x.y.json",
                     "demo__x%252Fy.json"]


def test_plain_names_stay_readable() -> None:
    assert _names([("thresholds/demo.yaml", "layer1-topk"), ("a/weak.yml", "gpt2/blocks.8.hook_resid_pre")]) == [
        "demo__layer1-topk.json", "weak__gpt2%2Fblocks.8.hook_resid_pre.json"]


def test_suite_names_and_ids_cannot_be_confused_at_the_separator() -> None:
    names = _names([("a.yaml", "b__c"), ("a__b.yaml", "c"), ("a_.yaml", "_b"), ("a.yaml", "_b"), ("a_.yaml", "b")])
    assert len(set(names)) == 5


def test_suites_sharing_a_file_name_are_told_apart_by_their_path() -> None:
    names = _names([("one/demo.yaml", "s"), ("two/demo.yaml", "s"), ("two/demo.yml", "s"), ("demo.yaml.yaml", "s")])
    assert names == ["demo~one%2Fdemo.yaml__s.json", "demo~two%2Fdemo.yaml__s.json", "demo~two%2Fdemo.yml__s.json",
                     "demo.yaml__s.json"]


def test_random_ids_and_suites_never_share_a_file() -> None:
    rng = random.Random(0)
    alphabet = "ab_-./%~é"
    suites = sorted({"/".join(rng.choice(["x", "y", "x_", "_"]) for _ in range(rng.randint(1, 3))) + rng.choice(
        [".yaml", ".yml"]) for _ in range(40)})
    ids = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(300)})
    pairs = list(itertools.product(suites, ids))
    names = _names(pairs)
    assert len(set(names)) == len(pairs)
    for name in names:
        assert "/" not in name and "\0" not in name and not name.startswith(".")
        assert len(name.encode()) <= 255


def test_names_too_long_for_a_file_system_are_shortened_and_stay_distinct() -> None:
    long_suite = "s" * 240 + ".yaml"
    names = _names([(long_suite, "a" * 100), (long_suite, "a" * 99 + "b")])
    assert len(set(names)) == 2 and all(len(n.encode()) <= 255 for n in names)


def test_ids_that_differ_only_in_case_stay_apart_where_case_is_ignored() -> None:
    """On macOS or Windows ``demo__SAE.json`` and ``demo__sae.json`` would be one file: names that differ only in
    case get their capitals escaped; other names stay as they are."""
    names = _names([("t/demo.yaml", "SAE"), ("t/demo.yaml", "sae"), ("t/demo.yaml", "Sae"), ("t/demo.yaml", "L1-TopK"),
                    ("t/demo.yaml", "A/b"), ("t/demo.yaml", "a/b")])
    assert names == ["demo__%53%41%45.json", "demo__sae.json", "demo__%53ae.json", "demo__L1-TopK.json",
                     "demo__%41%2Fb.json", "demo__a%2Fb.json"]
    suites = _names([("u/Demo.yaml", "x"), ("v/demo.yaml", "x")])
    assert suites == ["%44emo__x.json", "demo__x.json"]


def test_random_ids_never_share_a_file_where_case_is_ignored() -> None:
    rng = random.Random(1)
    ids = sorted({"".join(rng.choice("aAbB%5_") for _ in range(rng.randint(1, 5))) for _ in range(400)})
    names = _names([("Demo.yaml", uid) for uid in ids] + [("demo.yml", uid) for uid in ids])
    assert len({n.casefold() for n in names}) == len(names) == 2 * len(ids)
