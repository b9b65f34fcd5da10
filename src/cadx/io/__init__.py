"""Readers and writers: slides, annotations, tile-coordinate files, pyramidal TIFFs."""
