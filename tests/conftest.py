"""Test-wide settings.

One intra-op thread per process: on a 2-core machine, two torch processes (the tests and
the server subprocess) each spinning two threads slow small-model tests down 50-100x.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by every subprocess the tests start

import torch  # noqa: E402

torch.set_num_threads(1)
