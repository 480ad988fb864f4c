"""Rendering: rays, volume rendering, occupancy grids, whole frames."""
