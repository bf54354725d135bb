package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// API is the part of the Kubernetes API weftd uses. NewAPI is the real one; tests adapt
// client-go's fake clientset to it.
type API interface {
	// ListNodes and WatchNodes feed the node informer.
	ListNodes(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error)
	WatchNodes(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	// PatchNodeStatus patches a node through its status subresource (annotations and
	// conditions), the only write weftd makes.
	PatchNodeStatus(ctx context.Context, name string, pt types.PatchType, data []byte) (*corev1.Node, error)
	// GetPod reads a pod (to find this node's name from POD_NAME without NODE_NAME).
	GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
}

// restAPI is API over one REST client that knows only the core/v1 types: client-go's
// generated clientset registers every API group and would triple weftd's size.
type restAPI struct {
	rc     *rest.RESTClient
	params runtime.ParameterCodec
}

// NewAPI returns the API of the server cfg names.
func NewAPI(cfg *rest.Config) (API, error) {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.APIPath = "/api"
	c.NegotiatedSerializer = serializer.NewCodecFactory(s).WithoutConversion()
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &restAPI{rc: rc, params: runtime.NewParameterCodec(s)}, nil
}

func (a *restAPI) ListNodes(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error) {
	var timeout time.Duration
	if opts.TimeoutSeconds != nil {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	list := &corev1.NodeList{}
	err := a.rc.Get().Resource("nodes").VersionedParams(&opts, a.params).Timeout(timeout).Do(ctx).Into(list)
	return list, err
}

func (a *restAPI) WatchNodes(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	var timeout time.Duration
	if opts.TimeoutSeconds != nil {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	opts.Watch = true
	return a.rc.Get().Resource("nodes").VersionedParams(&opts, a.params).Timeout(timeout).Watch(ctx)
}

func (a *restAPI) PatchNodeStatus(ctx context.Context, name string, pt types.PatchType, data []byte) (*corev1.Node, error) {
	n := &corev1.Node{}
	err := a.rc.Patch(pt).Resource("nodes").Name(name).SubResource("status").Body(data).Do(ctx).Into(n)
	return n, err
}

func (a *restAPI) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	err := a.rc.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(p)
	return p, err
}
