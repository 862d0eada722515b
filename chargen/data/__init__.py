"""Corpora: text files or MIDI folders -> id tensors -> train/validation split -> TBPTT windows; and reports on files (inspect, compare)."""
