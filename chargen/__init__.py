"""chargen: teach a recurrent neural network to write.

Text one character at a time, music one MIDI event at a time.

    chargen train data/tinyshakespeare.txt --minutes 5
    chargen sample --temp 0.8
"""

import os
import sys
import warnings

# OpenMP worker threads spin while they wait for work by default. On a machine whose
# cores are shared (other jobs, CI), a spinning worker takes the core its partner needs,
# and a 2-thread training step measured 2-6x slower than with passive waiting (see
# docs/benchmarks.md). OpenMP reads this once, when torch loads: set it only if torch is
# not loaded yet and the user has not chosen a policy.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# torch warns at import time when NumPy is absent; chargen never needs NumPy,
# so that warning would only be noise on every command's stderr.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

__version__ = "0.1.0"

from chargen.errors import ChargenError  # noqa: E402

__all__ = ["ChargenError", "__version__"]
