"""Train the Week 5 Net on MNIST: `python train.py` (or `make train`); `--help` lists the flags.

From Python: `s5.training.train(s5.recipes.RECIPES["fast"].replace(epochs=0.1))`.
"""

import sys

from s5.cli import quiet_ctrl_c

quiet_ctrl_c()  # before torch loads: Ctrl-C then ends in one line
from s5.train_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
