"""The end of a run, the same for the ``saeval`` command, the plugin and ``saeval merge``: the output
files, the HTML report, the GitHub step summary, the baseline updates, the timings kept for later
partitions and, for a shard, its shard record -- from the run's merged :class:`SuiteRun` s.

Nothing here raises for an I/O fault: each thing that cannot be written (a full disk, a folder in the
way, no permission, a name too long) becomes one ``cannot write X: reason`` problem, the other things
are still written, and what was there before stays (the output files are written all or none)."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_saeval.errors import OutputError, SaevalError, SuiteError
from pytest_saeval.fileio import os_reason
from pytest_saeval.report.baselines import write_baselines
from pytest_saeval.report.files import write_outputs
from pytest_saeval.report.markdown import append_github_step_summary, markdown_summary
from pytest_saeval.report.shardfile import ShardRecord, clear_shard_record, suite_digest, write_shard_record
from pytest_saeval.report.table import plural
from pytest_saeval.run.outcome import SuiteRun, only
from pytest_saeval.run.shards import ShardPlan, suite_name
from pytest_saeval.store.timings import SuiteTiming, save_timings

__all__ = ["FinishOptions", "Finished", "finish", "shard_runs"]


@dataclass(frozen=True)
class FinishOptions:
    """What to write at the end of a run."""

    output_dir: Path | None = None
    """Where the per-SAE JSON, ``all_eval_results.json`` / ``.csv`` and ``summary.md`` go."""
    report: Path | None = None
    """The self-contained HTML report to write."""
    update_baseline: bool = False
    """Rewrite each suite's baseline file from this run (from the suite's own inputs only)."""
    force_baseline: bool = False
    """With ``update_baseline``: record even when gates failed in this run."""
    force_flag: str = "--update-baseline-force"
    """The option that sets ``force_baseline`` on this surface (named when a baseline is refused)."""
    strict_baselines: bool = False
    """With ``update_baseline``: a suite without a ``baseline:`` key is a problem (the command was asked
    for that suite) rather than a note (pytest collects every suite of a repository)."""
    display: Callable[[Path], object] = field(default=lambda path: path, compare=False)
    """How paths are shown in the lines (e.g. relative to the invocation folder)."""
    shard: ShardPlan | None = None
    """This run is one shard of a partition: the outputs and baselines hold only the SAEs it owns (and
    results outside the partition, from the marker or the fixtures), and ``saeval-shard.json`` records
    which shard of which partition the folder holds, written last."""
    shard_complete: bool = True
    """The shard ran everything it selected; when not (a collection error, an early stop) its outputs are
    written but no shard record, so ``saeval merge`` does not take the folder for a finished shard."""
    surface: str = "saeval run"
    """What ran: ``saeval run`` or ``pytest`` (recorded in the shard record)."""
    timings_dir: Path | None = None
    """The cache folder where an unsharded run keeps its evaluation times for later partitions (``None``:
    not kept; a shard keeps them in its shard record instead)."""


@dataclass(frozen=True)
class Finished:
    """What :func:`finish` did."""

    lines: tuple[str, ...] = ()
    """One line per thing written or left alone, for the terminal."""
    problems: tuple[tuple[str, SaevalError], ...] = ()
    """``(what was being written, why it could not be)``."""

    @property
    def ok(self) -> bool:
        """True when everything asked for was written."""
        return not self.problems


def _as_error(e: OSError | SaevalError, path: Path | str | None, fix: str) -> SaevalError:
    """``cannot write X: reason`` for an I/O fault (X: the file the error names, else ``path``)."""
    if isinstance(e, SaevalError):
        return e
    return OutputError(f"cannot write {e.filename or path}: {os_reason(e)}", fix=fix)


def finish(runs: Sequence[SuiteRun], options: FinishOptions, errors: Sequence[str] = ()) -> Finished:
    """Write what ``options`` asks for from ``runs`` (the run's ``errors`` keep baselines as they were)."""
    lines: list[str] = []
    problems: list[tuple[str, SaevalError]] = []
    show = options.display
    plan = options.shard
    kept = list(runs) if plan is None else shard_runs(runs, plan)
    left = sum(len(r.results) for r in runs) - sum(len(r.results) for r in kept)
    if plan is not None and left:
        lines.append(f"shard {plan.shard}: {plural(left, 'result')} of SAEs another shard evaluates left out of "
                     "its outputs (that shard records them)")
    if options.output_dir is not None and (kept or plan is not None):
        try:
            if plan is not None:  # the old record must never vouch for the new outputs
                clear_shard_record(options.output_dir)
            paths = write_outputs(kept, options.output_dir, extra=[("summary.md", markdown_summary(kept))])
            lines.append(f"wrote {len(paths)} files to {show(options.output_dir)}")
        except (OSError, SaevalError) as e:
            problems.append(("writing the outputs", _as_error(e, options.output_dir, "choose a folder you can write to")))
    if options.report is not None and kept:
        from pytest_saeval.report.html import write_html_report

        try:
            lines.append(f"wrote report {show(write_html_report(kept, options.report))}")
        except (OSError, SaevalError) as e:
            problems.append(("writing the report", _as_error(
                e, options.report, "give --report (or --saeval-report) a file you can write; the previous report "
                "was left as it was")))
    if kept:
        try:
            append_github_step_summary(markdown_summary(kept))
        except OSError as e:
            problems.append(("writing the step summary", OutputError(
                f"cannot write $GITHUB_STEP_SUMMARY ({e.filename}): {os_reason(e)}", fix=_summary_fix(e))))
    if options.update_baseline:
        _update_baselines(kept, options, errors, lines, problems)
    if plan is None:
        _keep_timings(kept, options.timings_dir, lines)
    elif not problems:
        _record_shard(kept, plan, options, errors, lines, problems)
    return Finished(tuple(lines), tuple(problems))


def _summary_fix(e: OSError) -> str:
    """What to do when the step summary cannot be written: a full disk needs space, anything else another file."""
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        first = "free space on the runner"
    elif e.errno == errno.EISDIR:
        first = "point GITHUB_STEP_SUMMARY at a file, not a folder"
    else:
        first = "point GITHUB_STEP_SUMMARY at a file you can write"
    return f"{first}, or unset GITHUB_STEP_SUMMARY; the summary is also in summary.md with --output-dir"


def shard_runs(runs: Sequence[SuiteRun], plan: ShardPlan) -> list[SuiteRun]:
    """What a shard records of ``runs``: the SAEs it owns, and those outside the partition (evaluated for
    the saeval marker or the fixtures); never another shard's."""
    out = []
    for run in runs:
        name = suite_name(run.suite.path)
        owned = plan.owns_suite(name)
        mine = only(run, functools.partial(_recorded_here, plan, name, owned))
        if mine.results or mine.checks:
            out.append(mine)
    return out


def _recorded_here(plan: ShardPlan, suite: str, owned: bool, uid: str) -> bool:
    return owned or not plan.selects(suite, uid)


def _timings(runs: Sequence[SuiteRun]) -> dict[str, SuiteTiming]:
    """Seconds and SAEs by suite name, summed over its evaluations (its own inputs and a conftest's)."""
    found: dict[str, SuiteTiming] = {}
    for run in runs:
        if run.seconds is None:
            continue
        name = suite_name(run.suite.path)
        before = found.get(name, SuiteTiming(0.0, 0))
        found[name] = SuiteTiming(before.seconds + run.seconds, before.saes + len(run.results))
    return found


def _keep_timings(runs: Sequence[SuiteRun], folder: Path | None, lines: list[str]) -> None:
    """Keep the suites' seconds in the cache folder; a folder that cannot be written is a line, as every cache
    fault is a warning and never the run's failure (later partitions are then balanced by the estimate)."""
    found = _timings(runs)
    if folder is None or not found:
        return
    try:
        save_timings(folder, found)
    except OSError as e:
        lines.append(f"timings not kept: cannot write {e.filename or folder}: {os_reason(e)} (later shards are "
                     "balanced by the estimate)")


def _record_shard(runs: Sequence[SuiteRun], plan: ShardPlan, options: FinishOptions, errors: Sequence[str],
                  lines: list[str], problems: list[tuple[str, SaevalError]]) -> None:
    if options.output_dir is None:
        lines.append(f"shard {plan.shard}: no output folder, so nothing for saeval merge "
                     "(give --output-dir or --saeval-output-dir)")
        return
    if not options.shard_complete:
        lines.append(f"shard {plan.shard} NOT recorded for saeval merge: the run did not run everything it "
                     "selected (collection errors or an early stop); fix that and run the shard again")
        return
    extra = sorted({(suite_name(r.suite.path), uid) for r in runs for uid in r.results
                    if not plan.selects(suite_name(r.suite.path), uid)})
    record = ShardRecord(plan=plan, suites={name: suite_digest(name) for g in plan.groups for name in g.suites},
                         extra=tuple(extra), errors=tuple(errors), timings=_timings(runs), surface=options.surface)
    try:
        path = write_shard_record(options.output_dir, record)
        lines.append(f"recorded shard {plan.shard} of partition {plan.partition[:8]} in {options.display(path)}")
    except OSError as e:
        problems.append(("recording the shard", _as_error(e, options.output_dir, "choose a folder you can write to")))


def _update_baselines(runs: Sequence[SuiteRun], options: FinishOptions, errors: Sequence[str], lines: list[str],
                      problems: list[tuple[str, SaevalError]]) -> None:
    if errors:
        lines.append(f"baseline NOT updated: {plural(len(errors), 'evaluation error')} in this run "
                     "(fix them and run again)")
        return
    own = [r for r in runs if r.inputs.own]
    failed = sum(not c.passed for r in runs for c in r.checks)
    if failed and not options.force_baseline:
        elsewhere = sum(not c.passed for r in runs if not r.inputs.own for c in r.checks)
        where = f" ({elsewhere} of them on a conftest's inputs)" if elsewhere else ""
        lines.append(f"baseline NOT updated: {plural(failed, 'gate')} failed in this run{where} (fix the SAEs, or "
                     f"record these values anyway with {options.force_flag})")
        return
    with_file = [r for r in own if r.suite.baseline is not None]
    for run in runs:
        if not run.inputs.own and not any(r.suite.path == run.suite.path for r in own):
            lines.append(f"baseline not updated for {run.title}: only other inputs than the suite's own were evaluated")
            continue
        if run.suite.baseline is not None or not run.inputs.own:
            continue
        if options.strict_baselines:
            problems.append(("updating the baseline", SuiteError(
                "updating the baseline needs a baseline file",
                fix="add `baseline: baselines/<name>.json` to the suite (the file is created on update)",
                file=str(run.suite.path), key="baseline")))
            return
        lines.append(f"baseline not updated for {run.suite.path}: it has no `baseline:` key "
                     "(add `baseline: baselines/<name>.json`; the file is created on update)")
    try:
        anyway = f" (recorded anyway: {plural(failed, 'gate')} failed in this run)" if failed else ""
        lines.extend(f"updated baseline {options.display(path)}{anyway}" for path in write_baselines(with_file))
    except (OSError, SaevalError) as e:
        problems.append(("updating the baseline", _as_error(e, None, "choose a baseline path you can write to")))
