"""``python -m groundcot``: the same as the ``groundcot`` command."""
import os
import sys

from groundcot.pipeline.cli import INTERRUPTED, main

code = main()
if code == INTERRUPTED:
    # an interrupt that landed in code run from a string (exec/eval) leaves CPython's "unhandled
    # KeyboardInterrupt" mark set, caught or not, and `python -m` then exits by SIGINT (-2), not 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
