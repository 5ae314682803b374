"""Energy-saving and decarbonisation advice (节能优化建议): diagnostics, measures, engine."""
