"""score stage package."""
