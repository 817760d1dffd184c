"""What every part of Stan shares: the resource models and the CRDs made from them, ids, validation,
cron timing, the operator's configuration, the Kubernetes client helpers, the index and certificates.

The operator, the REST facade, the CLI and the control-plane tools build on this package and on no
one else's internals; ``make lint`` holds them to it.
"""
