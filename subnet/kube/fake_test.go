package kube

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
)

// fakeAPI is API over client-go's fake clientset, for unit tests.
type fakeAPI struct{ cs *fake.Clientset }

var _ API = fakeAPI{}

func (f fakeAPI) ListNodes(ctx context.Context, o metav1.ListOptions) (*corev1.NodeList, error) {
	return f.cs.CoreV1().Nodes().List(ctx, o)
}

func (f fakeAPI) WatchNodes(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return f.cs.CoreV1().Nodes().Watch(ctx, o)
}

func (f fakeAPI) PatchNodeStatus(ctx context.Context, name string, pt types.PatchType, data []byte) (*corev1.Node, error) {
	return f.cs.CoreV1().Nodes().Patch(ctx, name, pt, data, metav1.PatchOptions{}, "status")
}

func (f fakeAPI) GetPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	return f.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
}

// IsWatchListSemanticsUnSupported tells the reflector that the fake cannot stream a list.
func (f fakeAPI) IsWatchListSemanticsUnSupported() bool { return true }
