"""chargen: teach a recurrent neural network to write.

Text one character at a time, music one MIDI event at a time.

    chargen train data/tinyshakespeare.txt --minutes 5
    chargen sample --temp 0.8
"""

import warnings

# torch warns at import time when NumPy is absent; chargen never needs NumPy,
# so that warning would only be noise on every command's stderr.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

__version__ = "0.1.0"

from chargen.errors import ChargenError  # noqa: E402

__all__ = ["ChargenError", "__version__"]
