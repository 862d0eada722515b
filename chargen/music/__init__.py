"""Music: MIDI files (the only mido code) <-> notes on a step grid <-> event tokens, in each vocabulary version."""
