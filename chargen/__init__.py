"""chargen: teach a recurrent neural network to write.

Text one character at a time, music one MIDI event at a time.

    chargen train data/tinyshakespeare.txt --minutes 5
    chargen sample --temp 0.8

From Python (docs/python-api.md):

    import chargen
    model = chargen.load("checkpoints/tinyshakespeare-20261121-120000")
    print(model.generate("ROMEO:", length=200, temperature=0.8))

This file holds the public API only; docs/architecture.md maps the package.
"""

import warnings

# torch warns at import time when NumPy is absent; chargen never needs NumPy,
# so that warning would only be noise on every command's stderr.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

__version__ = "0.1.0"

from chargen.api import Model, State, load  # noqa: E402
from chargen.errors import ArgumentError, ChargenError  # noqa: E402
from chargen.training.api import train  # noqa: E402

__all__ = ["ArgumentError", "ChargenError", "Model", "State", "__version__", "load", "train"]
