"""Tasks turn records into samples with a declared outcome (labelers)."""
