"""A real Kubernetes control plane on loopback, built from source at pinned versions.

Stan's behaviour is proven against a real API server, not a fake: etcd,
kube-apiserver and kube-controller-manager (for garbage collection, namespace
deletion and service-account tokens), without a kubelet, as controller-runtime's
envtest does. ``build`` compiles and caches the binaries; ``cluster`` runs them.
"""
