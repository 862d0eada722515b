"""Hidden states after recent primes, so that continuing a text costs only its new characters.

An RNN carries everything it has read in its hidden state. When a writer asks
for a continuation of the text they asked about a moment ago plus what they
have written since, the server looks up the longest recent prime that starts
the new one, takes the hidden state it left, and feeds the model only the
characters after it: the cost of a continuation depends on what is new, not on
how long the whole text has grown.

    cache = PrimeCache(capacity=32)
    known, state = cache.longest_prefix("It was a dark and stormy night", client="10.0.0.7")
    state = model.prime_state(prime[len(known):], state=state)
    cache.put(prime, state, client="10.0.0.7")

The cache is bounded (least recently used entries go first) and belongs to one
model; states are treated as read-only values, never changed in place. Each entry
belongs to the client whose text it read, and a lookup sees only that client's
entries: were they shared, how much of a prime was reused (or how fast it was
answered) would tell one client whether another's text began the same way.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Optional


class PrimeCache:
    """A bounded LRU map from (client, prime text) to the model state after reading it."""

    def __init__(self, capacity: int = 32):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._states: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()  # requests run on a thread pool

    def __len__(self) -> int:
        return len(self._states)

    def longest_prefix(self, prime: str, client: str = "") -> tuple[str, Optional[Any]]:
        """The longest prime cached for `client` that `prime` starts with, and its state;
        ("", None) if none.

        A linear scan: with a few dozen entries, comparing prefixes (a memcmp each)
        costs microseconds even for long texts.
        """
        with self._lock:
            best = ""
            for owner, known in self._states:
                if owner == client and len(known) > len(best) and prime.startswith(known):
                    best = known
            if not best:
                return "", None
            self._states.move_to_end((client, best))
            return best, self._states[(client, best)]

    def put(self, prime: str, state: Any, client: str = "") -> None:
        """Remember the state after `client`'s `prime`, dropping the least recently used entry when full."""
        if not prime:
            return  # the empty prime's state is the model's fresh state: nothing to save
        with self._lock:
            self._states[(client, prime)] = state
            self._states.move_to_end((client, prime))
            while len(self._states) > self.capacity:
                self._states.popitem(last=False)
