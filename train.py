"""Train the Week 5 Net on MNIST: `python train.py` (or `make train`); `python train.py --help` lists the flags.

The recipes and the run loop live in s5/training.py; this file is the command line over them.
"""

import sys

from s5.training import main

if __name__ == "__main__":
    sys.exit(main())
