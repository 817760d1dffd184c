"""Stan's Kubernetes operator: owns the StanTask and StanHeartbeat resources.

The package sits one level below ``operator/`` so that running Python from the
project root never shadows the standard library's ``operator`` module.
"""
