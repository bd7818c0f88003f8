"""A project whose suites make three evaluation groups over two models, for the sharding tests.

``thresholds/a1.yaml`` and ``thresholds/a2.yaml`` share the first model, its tokens and settings (one
group: a shard never splits them); ``thresholds/b.yaml`` uses the second model; ``thresholds/c.yaml``
uses the second model with other batch settings (a third group) and gates one SAE against
``baselines/c.json``. ``tests/test_other.py`` is an ordinary test that logs each run of itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.plugin_helpers import Assets

SUITES = ("thresholds/a1.yaml", "thresholds/a2.yaml", "thresholds/b.yaml", "thresholds/c.yaml")
GROUPS = ("thresholds/a1.yaml + thresholds/a2.yaml", "thresholds/b.yaml", "thresholds/c.yaml")


@dataclass(frozen=True)
class ShardProject:
    """Paths of the project."""

    root: Path
    """The project folder (runs start here)."""
    other_log: Path
    """One line per run of ``tests/test_other.py::test_other`` (its ``$SAEVAL_TEST_SHARD``)."""

    @property
    def baseline(self) -> Path:
        return self.root / "baselines" / "c.json"

    def shift_baseline(self, metric: str, by: float) -> None:
        """Move the recorded baseline value of ``metric`` for c.yaml's SAE (so its gate fails)."""
        data: dict[str, Any] = json.loads(self.baseline.read_text())
        data["saes"]["cb"][metric] += by
        self.baseline.write_text(json.dumps(data, indent=2) + "\n")


def _sae(uid: str, path: Path, gates: str) -> str:
    return f"  - id: {uid}\n    path: {path}\n    gates:\n" + "".join(f"      {g}\n" for g in gates.split("; "))


def write_shard_project(root: Path, assets: Assets) -> ShardProject:
    """Write the project into ``root`` (an empty folder); the baseline is recorded by the caller."""
    (root / "thresholds").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "baselines").mkdir()
    (root / "pytest.ini").write_text("[pytest]\nsaeval_thresholds = thresholds/*.yaml\n")
    m1, m2 = assets.model_block(assets.model), assets.model_block(assets.model2)
    (root / "thresholds" / "a1.yaml").write_text(
        m1 + assets.data_block() + "saes:\n"
        + _sae("s0", assets.sae0, 'l0: ">= 0"; explained_variance: "<= 1"')
        + _sae("s1", assets.sae1, 'frac_alive: "<= 1"; l0: "<= 1000"'))
    (root / "thresholds" / "a2.yaml").write_text(
        m1 + assets.data_block() + "saes:\n" + _sae("s0b", assets.sae0b, 'l0: "<= 1000"; cossim: "<= 1"'))
    (root / "thresholds" / "b.yaml").write_text(
        m2 + assets.data_block() + "saes:\n"
        + _sae("s0", assets.sae0, 'l0: ">= 0"; mse: ">= 0"')
        + _sae("s1", assets.sae1, 'frac_alive: ">= 0"'))
    (root / "thresholds" / "c.yaml").write_text(
        m2 + assets.data_block(batch_size=2) + "baseline: ../baselines/c.json\nsaes:\n"
        + _sae("cb", assets.sae0b, 'l0: [">= baseline - 0.5", "<= baseline + 0.5"]; frac_alive: ">= 0"')
        + _sae("cc", assets.sae1, 'l0: "<= 1000"'))
    other_log = root / "other.log"
    (root / "tests" / "test_other.py").write_text(
        "import os\n\n\n"
        "def test_other():\n"
        f"    with open({str(other_log)!r}, 'a') as f:\n"
        "        f.write(os.environ.get('SAEVAL_TEST_SHARD', '-') + '\\n')\n"
    )
    return ShardProject(root, other_log)
