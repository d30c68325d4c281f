// Command etcd is the etcd server, built from the go.etcd.io/etcd/server/v3 module (whose
// etcdmain package is what the upstream etcd binary runs) for scripts/control-plane.sh.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
