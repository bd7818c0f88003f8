"""The end of a run: the outputs, the baseline files and the terminal summary (single process or
xdist controller), from the runs a :class:`~pytest_saeval._runner.Runner` gathered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_saeval.errors import SaevalError
from pytest_saeval.spec.gates import Gate
from pytest_saeval.session import SuiteRun
from pytest_saeval.spec.suite import Suite

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval._runner import Runner

__all__ = ["finish", "no_baseline_reason", "summary_lines"]


def finish(runner: Runner) -> bool:
    """Write the outputs and the baselines (controller or single process). False when that failed."""
    runs = runner.merged()
    ok = True
    if runner.options.output_dir is not None and runs:
        from pytest_saeval.outputs import write_outputs
        from pytest_saeval.report_md import write_markdown

        try:
            paths = write_outputs(runs, runner.options.output_dir)
            paths.append(write_markdown(runs, runner.options.output_dir / "summary.md"))
            runner.finish_lines.append(f"wrote {len(paths)} files to {runner.display_path(runner.options.output_dir)}")
        except (OSError, SaevalError) as e:
            runner.finish_lines.append(f"ERROR writing the outputs: {e}")
            ok = False
    if runner.options.report is not None and runs:
        from pytest_saeval.report_html import write_html_report

        try:
            path = write_html_report(runs, runner.options.report)
            runner.finish_lines.append(f"wrote report {runner.display_path(path)}")
        except (OSError, SaevalError) as e:
            runner.finish_lines.append(f"ERROR writing the report: {e}")
            ok = False
    if runs:
        from pytest_saeval.report_md import append_github_step_summary, markdown_summary

        append_github_step_summary(markdown_summary(runs))
    if runner.options.update_baseline:
        ok = _update_baselines(runner, runs) and ok
    return ok


def _update_baselines(runner: Runner, runs: list[SuiteRun]) -> bool:
    if runner.errors:
        n = len(runner.errors)
        runner.finish_lines.append(
            f"baseline NOT updated: {n} evaluation error{'s' if n != 1 else ''} in this run (fix them and run again)"
        )
        return True
    from pytest_saeval.outputs import write_baselines

    with_file = [r for r in runs if r.suite.baseline is not None]
    for run in runs:
        if run.suite.baseline is None:
            runner.finish_lines.append(
                f"baseline not updated for {run.suite.path}: it has no `baseline:` key "
                "(add `baseline: baselines/<name>.json`; the file is created on update)"
            )
    if not with_file:
        return True
    try:
        for path in write_baselines(with_file):
            runner.finish_lines.append(f"updated baseline {runner.display_path(path)}")
    except (OSError, SaevalError) as e:
        runner.finish_lines.append(f"ERROR updating the baseline: {e}")
        return False
    return True


def summary_lines(runner: Runner) -> list[str]:
    """The terminal summary section: one table per suite, then notes and what was written."""
    from pytest_saeval.outputs import format_table

    lines: list[str] = []
    for run in runner.merged():
        lines.extend(format_table(run).splitlines())
        for uid, gate in run.unchecked:
            lines.append(f"  not checked: {no_baseline_reason(run.suite, uid, gate)}")
        lines.extend(f"  note: {n}" for n in run.notes)
    total = sum(runner.evaluations.values())
    if total:
        who = ", ".join(f"{k}: {v}" for k, v in sorted(runner.evaluations.items()) if k != "main")
        lines.append(f"{total} SAE evaluation{'s' if total != 1 else ''}" + (f" ({who})" if who else ""))
    for text in runner.errors:
        lines.append(f"ERROR {text}")
    lines.extend(runner.finish_lines)
    return lines


def no_baseline_reason(suite: Suite | None, uid: str, gate: Gate) -> str:
    """Why a baseline-relative gate was not checked (``suite`` given: with its file:line)."""
    where = "" if suite is None else (f"{suite.path}:{gate.line}: " if gate.line else f"{suite.path}: ")
    return (f"{where}[{uid}] {gate.metric} {gate.text}: the baseline has no value yet; "
            "--saeval-update-baseline records it in this run")
