"""SPTI: Private Evolution in the text domain for images (captions voted on through renders)."""
