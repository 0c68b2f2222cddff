"""Train the Week 5 Net on MNIST: `python train.py` (or `make train`); `python train.py --help` lists the flags.

From Python: `from s5.training import RECIPES, train`; `train(RECIPES["fast"].replace(epochs=0.1))`.
"""

import sys

from s5.train_cli import main

if __name__ == "__main__":
    sys.exit(main())
