"""Generation tokens/s: KV-cached vs full-recomputation text EBT and Transformer++ (64-token prompt, 32 new
tokens, 2 thinking steps), interleaved in one process. ``python benchmarks/bench_generate.py [--grid quick]``."""
import sys

from _common import main

if __name__ == "__main__":
    sys.exit(main("generate"))
