"""Train-step time, FLOPs, achieved FLOP/s and peak memory: Transformer++ vs the reference and fast text EBT
(System 1 and System 2), interleaved in one process. ``python benchmarks/bench_train.py [--grid quick]``."""
import sys

from _common import main

if __name__ == "__main__":
    sys.exit(main("train"))
