"""Which gate items of a pytest run were collected, selected and run, and the runs cut down to those that ran.

A unit of gate items is evaluated whole when its first item runs, but when pytest stops early (``-x``,
``--maxfail``, a keyboard interrupt) some of its items never run. The summary, the outputs and the
baselines then cover only the gates whose items ran, and say how many were deselected or not run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_saeval.run.outcome import SuiteRun

__all__ = ["GateLedger", "absolute"]


def absolute(path: Path | str) -> Path:
    """``path`` absolute and normalised (``..`` resolved by name, links kept), as the plugin keys suite files."""
    return Path(os.path.abspath(path))


@dataclass
class GateLedger:
    """Counts of gate items and the gates that ran, in one process (a worker sends its counts on).
    Mutable: hooks count into it as items are collected, selected and reported."""

    collected: int = 0
    """Gate items collected (before deselection)."""
    selected: int = 0
    """Gate items selected to run (after deselection)."""
    sharded: int = 0
    """Gate items deselected because another shard runs them (``--saeval-shard``)."""
    reported: int = 0
    """Gate items that ran to a result: passed, failed, skipped, or an error in setup."""
    ran: set[tuple[Path, str, str]] = field(default_factory=set)
    """``(suite file, SAE id, metric)`` of the gate items whose test ran."""
    gateless: dict[str, int] = field(default_factory=dict)
    """Suite files (as shown) collected without a single gate -> their SAE count: nothing of them is a test."""

    def note(self, path: Path, sae_id: str, metric: str, when: str, passed: bool) -> None:
        """Count one phase report of a gate item (``when``: setup, call or teardown)."""
        if when == "call":
            self.ran.add((absolute(path), sae_id, metric))
        if when == "call" or (when == "setup" and not passed):
            self.reported += 1

    def only_ran(self, runs: Iterable[SuiteRun]) -> list[SuiteRun]:
        """``runs`` of gate items cut down to the gates that ran, and to the SAEs with such a gate."""
        out = []
        for run in runs:
            path = absolute(run.suite.path)
            checks = [c for c in run.checks if (path, c.sae_id, c.gate.metric) in self.ran]
            unchecked = [(u, g) for u, g in run.unchecked if (path, u, g.metric) in self.ran]
            uids = {c.sae_id for c in checks} | {u for u, _ in unchecked}
            if not uids:
                continue
            out.append(replace(
                run, checks=checks, unchecked=unchecked, entries=[e for e in run.entries if e.unique_id in uids],
                results={u: r for u, r in run.results.items() if u in uids},
                provenance={u: v for u, v in run.provenance.items() if u in uids},
                sae_cfgs={u: v for u, v in run.sae_cfgs.items() if u in uids},
                intervals={u: v for u, v in run.intervals.items() if u in uids}))
        return out

    def to_wire(self) -> dict[str, Any]:
        """The counts as plain data (what a worker sends)."""
        return {"collected": self.collected, "selected": self.selected, "sharded": self.sharded,
                "reported": self.reported, "gateless": dict(self.gateless)}

    def add_remote(self, counts: Mapping[str, Any]) -> None:
        """Take in a worker's counts: every worker collects and selects every item; each item runs on one."""
        self.collected = max(self.collected, int(counts.get("collected", 0)))
        self.selected = max(self.selected, int(counts.get("selected", 0)))
        self.sharded = max(self.sharded, int(counts.get("sharded", 0)))
        self.reported += int(counts.get("reported", 0))
        self.gateless.update({str(k): int(v) for k, v in (counts.get("gateless") or {}).items()})

    def lines(self) -> list[str]:
        """What the summary says about suites without gates, and about gates that were collected but not run
        (nothing when all ran)."""
        return [*(f"{path}: no gates, so nothing of it is a test ({n} SAE{'' if n == 1 else 's'}); "
                  f"`saeval init {path}` proposes gates from one evaluation" for path, n in sorted(self.gateless.items())),
                *self._not_run()]

    def _not_run(self) -> list[str]:
        deselected = max(self.collected - self.selected - self.sharded, 0)
        not_run = max(self.selected - self.reported, 0)
        if not deselected and not not_run and not self.sharded:
            return []
        parts = [f"{self.sharded} in other shards"] if self.sharded else []
        if deselected:
            parts.append(f"{deselected} deselected (-k, -m or deselection)")
        if not_run:
            parts.append(f"{not_run} not run (pytest stopped early: -x, --maxfail, a collection error or an "
                         "interruption)")
        return [f"{self.collected} gates collected: {', '.join(parts)}; the summary, outputs and baselines "
                f"cover the {min(self.reported, self.selected)} that ran"]
