"""Pure-numpy preprocessing: tissue masks, tile grids, polygon rasterisation.

Arrays in, arrays out; no torch and no file readers here.
"""
