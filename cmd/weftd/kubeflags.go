package main

import (
	"github.com/spf13/pflag"

	"github.com/weftnet/weft/daemon"
	"github.com/weftnet/weft/subnet/kube"
)

// kubeFlags are flanneld's Kubernetes-mode flags, by the same names and defaults.
type kubeFlags struct {
	enabled            bool
	apiURL             string
	kubeconfig         string
	annotationPrefix   string
	netConfPath        string
	setNodeUnavailable bool
	getenv             func(string) string // NODE_NAME, POD_NAME, POD_NAMESPACE; set by parseFlags
}

func (k *kubeFlags) addTo(fs *pflag.FlagSet) {
	fs.BoolVar(&k.enabled, "kube-subnet-mgr", false, "Kubernetes mode: the node's subnet is its spec.podCIDR and peers are the other Nodes (instead of etcd)")
	fs.StringVar(&k.apiURL, "kube-api-url", "", "Kubernetes API server URL (default: the kubeconfig's, or in-cluster)")
	fs.StringVar(&k.kubeconfig, "kubeconfig-file", "", "kubeconfig file (default: in-cluster config when --kube-api-url is not given either)")
	fs.StringVar(&k.annotationPrefix, "kube-annotation-prefix", kube.DefaultAnnotationPrefix, "prefix of the node annotations weftd publishes and reads")
	fs.StringVar(&k.netConfPath, "net-config-path", "/etc/kube-flannel/net-conf.json", "network config file in Kubernetes mode")
	fs.BoolVar(&k.setNodeUnavailable, "set-node-network-unavailable", true, "set the node's NetworkUnavailable condition to false once the data plane is programmed")
}

// config is the daemon's Kubernetes config, or nil in etcd mode.
func (k *kubeFlags) config() *daemon.KubeConfig {
	if !k.enabled {
		return nil
	}
	return &daemon.KubeConfig{APIURL: k.apiURL, Kubeconfig: k.kubeconfig, AnnotationPrefix: k.annotationPrefix,
		NetConfPath: k.netConfPath, SetNodeNetworkUnavailable: k.setNodeUnavailable, Getenv: k.getenv}
}
