// Command coredns is CoreDNS with only the plugins the test node's cluster DNS
// uses. The upstream main links every plugin (cloud DNS providers, etcd,
// dnstap...), which took ~14 min to build here; this one builds in a fraction
// of that because the Kubernetes client packages are the only large import.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

// Directives replaces the generated list: the order plugins run in, and the
// only names a Corefile may use.
func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
