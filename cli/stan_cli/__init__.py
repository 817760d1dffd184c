"""The ``stan`` command line: run Stan locally, drive the local control plane, generate the CRDs."""
