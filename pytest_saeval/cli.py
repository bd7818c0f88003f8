"""The ``saeval`` command: run suite files outside pytest.

Exit codes: 0 every gate passed, 1 a gate failed, 2 bad input (one message naming file:line, key
and fix; no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import SaevalError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saeval", description="Gate trained sparse autoencoders.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="evaluate suite files and check their gates")
    run.add_argument("suites", nargs="+", metavar="SUITE.yaml", help="suite (threshold) files")
    run.add_argument("--output-dir", type=Path, default=None,
                     help="write per-SAE JSON, all_eval_results.json and all_eval_results.csv here")
    run.add_argument("--device", default=None, help="override every suite's model.device (auto, cpu, cuda, cuda:N)")
    run.add_argument("--update-baseline", action="store_true",
                     help="rewrite each suite's baseline file from this run (after checking the gates)")
    run.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    return parser


def _run(args: argparse.Namespace) -> int:
    from .outputs import format_table, write_baselines, write_outputs
    from .session import Session
    from .suite import load_suites

    suites = load_suites(args.suites)
    progress = not args.no_progress and sys.stderr.isatty()
    runs = Session(device=args.device, progress=progress).run(suites)
    for run in runs:
        print(format_table(run))
        for check in run.checks:
            if not check.passed:
                print(f"FAILED {check.message}")
    if args.output_dir is not None:
        paths = write_outputs(runs, args.output_dir)
        print(f"wrote {len(paths)} files to {args.output_dir}")
    if args.update_baseline:
        for path in write_baselines(runs):
            print(f"updated baseline {path}")
    return EXIT_OK if all(r.passed for r in runs) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saeval`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
    except SaevalError as e:
        print(f"saeval: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("saeval: interrupted", file=sys.stderr)
        return 130
    return EXIT_BAD_INPUT  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
