"""Stage implementations: one module or small package per stage."""
