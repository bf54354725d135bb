package daemon

import (
	"context"
	"time"

	"github.com/weftnet/weft/pkg/wait"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
	"github.com/weftnet/weft/subnet/kube"
)

// KubeConfig turns on Kubernetes mode (flanneld's --kube-subnet-mgr): the node's subnet is
// its spec.podCIDR, peers are the other Nodes, and the network config is a file.
type KubeConfig struct {
	APIURL           string // --kube-api-url
	Kubeconfig       string // --kubeconfig-file; with neither, the in-cluster config
	AnnotationPrefix string // --kube-annotation-prefix
	NetConfPath      string // --net-config-path
	// SetNodeNetworkUnavailable sets the node's NetworkUnavailable condition to false once
	// the data plane is programmed (--set-node-network-unavailable).
	SetNodeNetworkUnavailable bool
	// Getenv reads NODE_NAME, POD_NAME and POD_NAMESPACE.
	Getenv func(string) string
}

// nodeNameTimeout bounds finding this node's name (one get of the pod, without NODE_NAME).
const nodeNameTimeout = 30 * time.Second

// registry is the store weftd runs on, and how to release it.
type registry interface {
	subnet.Registry
	Close() error
}

// openRegistry opens etcd, or the Kubernetes API in Kubernetes mode.
func (d *Daemon) openRegistry(ctx context.Context) (registry, error) {
	k := d.cfg.Kube
	if k == nil {
		return etcdv3.New(d.cfg.Etcd, d.log.WithName("etcd"))
	}
	rc, err := kube.RESTConfig(k.APIURL, k.Kubeconfig)
	if err != nil {
		return nil, err
	}
	api, err := kube.NewAPI(rc)
	if err != nil {
		return nil, err
	}
	nctx, cancel := context.WithTimeout(ctx, nodeNameTimeout)
	name, err := kube.NodeName(nctx, api, k.Getenv)
	cancel()
	if err != nil {
		return nil, err
	}
	d.log.Info("Kubernetes mode", "apiServer", rc.Host, "node", name, "netConf", k.NetConfPath)
	return kube.New(kube.Config{API: api, NodeName: name, AnnotationPrefix: k.AnnotationPrefix,
		NetConfPath: k.NetConfPath, Log: d.log.WithName("kube"), Waiting: d.health.SetError})
}

// configWhere names where the network config comes from, in messages.
func (d *Daemon) configWhere() string {
	if d.cfg.Kube != nil {
		return "the file " + d.cfg.Kube.NetConfPath
	}
	return "etcd"
}

// configPlace names the config key in etcd, or the file.
func (d *Daemon) configPlace() string {
	if d.cfg.Kube != nil {
		return "the file " + d.cfg.Kube.NetConfPath
	}
	return "etcd at " + d.cfg.Etcd.Keys().Config
}

// markNetworkAvailable tells Kubernetes that this node's network is up (its
// NetworkUnavailable condition false), once, retrying until it works or ctx ends.
func (d *Daemon) markNetworkAvailable(ctx context.Context, reg subnet.Registry) error {
	k, ok := reg.(interface{ SetNetworkAvailable(context.Context) error })
	if d.cfg.Kube == nil || !d.cfg.Kube.SetNodeNetworkUnavailable || !ok {
		return nil
	}
	delay := time.Second
	for {
		rctx, cancel := context.WithTimeout(ctx, configReadTimeout)
		err := k.SetNetworkAvailable(rctx)
		cancel()
		if err == nil {
			d.log.Info("Set the node's NetworkUnavailable condition to false")
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		d.log.Error(err, "Cannot set the node's NetworkUnavailable condition yet; retrying")
		if wait.Sleep(ctx, delay) != nil {
			return nil
		}
		delay = min(2*delay, 30*time.Second)
	}
}
