"""Data: sources, the TFDS builder, the input pipeline, audio features."""
