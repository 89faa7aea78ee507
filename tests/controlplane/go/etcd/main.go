// Command etcd is the real etcd server (go.etcd.io/etcd/server/v3/etcdmain)
// at exactly the version k8s.io/kubernetes pins in its module graph (v3.6.x).
//
// Why not Debian's etcd-server: it is 3.4.x, older than what Kubernetes 1.34
// is tested against (3.5/3.6), and it would be a second, unpinned source of
// truth. Building etcdmain from the same module graph keeps one go.sum, costs
// little extra build time (the etcd client/server packages are already
// compiled for kube-apiserver) and accepts the usual etcd command-line flags.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
