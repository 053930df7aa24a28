"""Request and response policies the extproc applies inside the messages it already receives.

One small module per policy, each with a pure core (DESIGN: "Policies, identity, limits,
guards, pools: where they fit"); the stages call them in the order authenticate, limit,
guard, transform, translate.
"""
