package kube

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig is the client config flanneld builds from --kube-api-url and
// --kubeconfig-file: either or both given, or, with neither, the in-cluster config (the
// pod's service-account token and CA).
func RESTConfig(apiURL, kubeconfig string) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if apiURL == "" && kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags(apiURL, kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config (--kube-api-url, --kubeconfig-file, or in-cluster): %w", err)
	}
	cfg.UserAgent = "weftd"
	// Protobuf: listing thousands of Nodes decodes several times faster than JSON.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return cfg, nil
}

// NodeName finds this node's name as flanneld does: NODE_NAME, else the node of the pod
// POD_NAMESPACE/POD_NAME (one get of that pod).
func NodeName(ctx context.Context, c API, getenv func(string) string) (string, error) {
	if n := getenv("NODE_NAME"); n != "" {
		return n, nil
	}
	pod, ns := getenv("POD_NAME"), getenv("POD_NAMESPACE")
	if pod == "" || ns == "" {
		return "", fmt.Errorf("the node name is unknown: set NODE_NAME, or POD_NAME and POD_NAMESPACE")
	}
	p, err := c.GetPod(ctx, ns, pod)
	if err != nil {
		return "", fmt.Errorf("find the node of pod %s/%s: %w", ns, pod, err)
	}
	if p.Spec.NodeName == "" {
		return "", fmt.Errorf("pod %s/%s has no spec.nodeName", ns, pod)
	}
	return p.Spec.NodeName, nil
}
