"""methods stage package."""
