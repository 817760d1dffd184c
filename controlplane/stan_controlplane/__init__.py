"""A real Kubernetes cluster on this machine, built from source at pinned versions.

Stan's behaviour is proven against a real API server, not a fake: etcd,
kube-apiserver and kube-controller-manager (for garbage collection, namespace
deletion and service-account tokens), as controller-runtime's envtest runs
them; as root, also a node (kube-scheduler, containerd and a kubelet) that
runs Pods. ``build`` compiles and caches the binaries; ``cluster`` runs them,
``node`` and ``host`` the node; ``images`` builds what the node runs.
"""
