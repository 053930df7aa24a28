"""Local fakes of external services (identity providers) used by tests."""
