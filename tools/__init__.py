"""The command programs, each run from the repository root as `python -m tools.<name>`."""
