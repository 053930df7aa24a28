"""Request and response policies the extproc stages apply, each a small module with a pure core."""
