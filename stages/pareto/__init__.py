"""pareto stage package."""
