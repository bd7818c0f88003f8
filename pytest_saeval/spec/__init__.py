"""What the user wrote: gates, suite files (YAML) and baseline files, as validated dataclasses.

Pure Python (PyYAML, no torch): a suite file can be checked without loading anything heavy.

- :mod:`.gates` / :mod:`.verdict`: gate expressions and checking a value against them;
- :mod:`.suite`: the suite dataclasses; :mod:`.loader`: ``load_suite`` (YAML via :mod:`.reader`);
- :mod:`.baseline`: baseline files; :mod:`.editor`: textual edits of a suite file (``saeval init``).
"""
