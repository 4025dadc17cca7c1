"""Exact non-dominated sorting (``nds.nondominated_layers``) and the kernels behind it: the row
radix sort, the M=3 staircase sweeps, the slab sweep for rows near a plane."""
