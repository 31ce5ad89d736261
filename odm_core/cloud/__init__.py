"""Point clouds: PLY and LAS I/O, SMRF ground classification."""
