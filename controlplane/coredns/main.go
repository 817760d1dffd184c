// Command coredns is CoreDNS with only the plugins the local cluster's Corefile uses
// (see stan_controlplane/dns.py): CoreDNS's own main links in every plugin, the cloud
// providers' SDKs with them, which would take minutes to build for nothing.
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
