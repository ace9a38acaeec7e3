"""Project-wide constants, defined once."""

BLANK_ID = 0
"""Token id of the transducer/CTC blank. SentencePiece models reserve id 0 for it (as `pad`)."""

SAMPLE_RATE_HZ = 16000
"""Sample rate of every waveform the toolkit reads or writes."""
