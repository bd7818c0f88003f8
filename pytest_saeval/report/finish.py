"""The end of a run, the same for the ``saeval`` command and the plugin: the output files, the HTML
report, the GitHub step summary and the baseline updates, from the run's merged :class:`SuiteRun` s.

Nothing here raises for an I/O fault: each thing that cannot be written (a full disk, a folder in the
way, no permission, a name too long) becomes one ``cannot write X: reason`` problem, the other things
are still written, and what was there before stays (the output files are written all or none)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_saeval.errors import OutputError, SaevalError, SuiteError
from pytest_saeval.fileio import os_reason
from pytest_saeval.report.baselines import write_baselines
from pytest_saeval.report.files import write_outputs
from pytest_saeval.report.markdown import append_github_step_summary, markdown_summary
from pytest_saeval.report.table import plural
from pytest_saeval.run.outcome import SuiteRun

__all__ = ["FinishOptions", "Finished", "finish"]


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
    if options.output_dir is not None and runs:
        try:
            paths = write_outputs(runs, options.output_dir, extra=[("summary.md", markdown_summary(runs))])
            lines.append(f"wrote {len(paths)} files to {show(options.output_dir)}")
        except (OSError, SaevalError) as e:
            problems.append(("writing the outputs", _as_error(e, options.output_dir, "choose a folder you can write to")))
    if options.report is not None and runs:
        from pytest_saeval.report.html import write_html_report

        try:
            lines.append(f"wrote report {show(write_html_report(runs, options.report))}")
        except (OSError, SaevalError) as e:
            problems.append(("writing the report", _as_error(
                e, options.report, "give --report (or --saeval-report) a file you can write; the previous report "
                "was left as it was")))
    if runs:
        try:
            append_github_step_summary(markdown_summary(runs))
        except OSError as e:
            problems.append(("writing the step summary", OutputError(
                f"cannot write $GITHUB_STEP_SUMMARY ({e.filename}): {os_reason(e)}",
                fix="free space on the runner or unset GITHUB_STEP_SUMMARY; the summary is also in summary.md "
                "with --output-dir")))
    if options.update_baseline:
        _update_baselines(runs, options, errors, lines, problems)
    return Finished(tuple(lines), tuple(problems))


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
        lines.extend(f"updated baseline {options.display(path)}" for path in write_baselines(with_file))
    except (OSError, SaevalError) as e:
        problems.append(("updating the baseline", _as_error(e, None, "choose a baseline path you can write to")))
