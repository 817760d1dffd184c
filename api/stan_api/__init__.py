"""Stan's REST facade: translates the Stan Tasks & Heartbeat API into resource operations.

The package sits one level below ``api/``, like ``stan_operator``, and may
import the operator's public modules (models, validation, registries), never
the other way round.
"""
