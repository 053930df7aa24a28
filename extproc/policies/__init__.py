"""Request policies the router stage applies, in order: authenticate, limit, guard, transform."""
