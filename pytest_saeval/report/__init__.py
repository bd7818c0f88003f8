"""What a run leaves behind: the terminal table, the output files (per-SAE JSON, the combined JSON and
CSV, ``summary.md``, the GitHub step summary), the HTML report and baseline updates, all written by
one :func:`~.finish.finish` that the ``saeval`` command and the plugin share.
"""
