"""Request policies of the router stage, each a small module with a pure core.

Order in the router stage: authenticate, limit, guard, transform, translate.
"""
