"""The command programs, each run from the repository root as `python -m tools.<name>`."""

from s5.cli import quiet_ctrl_c

quiet_ctrl_c()  # before a tool's imports load torch: Ctrl-C then ends in one line
