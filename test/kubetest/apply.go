package kubetest

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
)

// strict decodes as the API server validates: unknown and duplicate fields are errors.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// Decode splits a YAML manifest into its objects, decoded into their API types (strictly:
// an unknown field is an error, as `kubectl apply` reports it).
func Decode(manifest string) ([]runtime.Object, error) {
	var objs []runtime.Object
	for i, doc := range docSeparator.Split(manifest, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		obj, _, err := strict.Decode([]byte(doc), nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// Apply creates every object of manifest on the server and returns them as the server
// read them back. It knows the kinds weft ships.
func Apply(ctx context.Context, cs kubernetes.Interface, manifest string) ([]runtime.Object, error) {
	objs, err := Decode(manifest)
	if err != nil {
		return nil, err
	}
	var out []runtime.Object
	c, g := metav1.CreateOptions{}, metav1.GetOptions{}
	for _, obj := range objs {
		var got runtime.Object
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			if _, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, c); err == nil {
				got, err = cs.CoreV1().ServiceAccounts(o.Namespace).Get(ctx, o.Name, g)
			}
		case *corev1.ConfigMap:
			if _, err = cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, c); err == nil {
				got, err = cs.CoreV1().ConfigMaps(o.Namespace).Get(ctx, o.Name, g)
			}
		case *corev1.Secret:
			if _, err = cs.CoreV1().Secrets(o.Namespace).Create(ctx, o, c); err == nil {
				got, err = cs.CoreV1().Secrets(o.Namespace).Get(ctx, o.Name, g)
			}
		case *rbacv1.ClusterRole:
			if _, err = cs.RbacV1().ClusterRoles().Create(ctx, o, c); err == nil {
				got, err = cs.RbacV1().ClusterRoles().Get(ctx, o.Name, g)
			}
		case *rbacv1.ClusterRoleBinding:
			if _, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, c); err == nil {
				got, err = cs.RbacV1().ClusterRoleBindings().Get(ctx, o.Name, g)
			}
		case *appsv1.DaemonSet:
			if _, err = cs.AppsV1().DaemonSets(o.Namespace).Create(ctx, o, c); err == nil {
				got, err = cs.AppsV1().DaemonSets(o.Namespace).Get(ctx, o.Name, g)
			}
		default:
			return nil, fmt.Errorf("apply: kind %T not handled", obj)
		}
		if err != nil {
			return nil, fmt.Errorf("apply %T: %w", obj, err)
		}
		out = append(out, got)
	}
	return out, nil
}
