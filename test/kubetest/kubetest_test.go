package kubetest

import (
	"context"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestServerRBACAndToken starts the real server, mints a service-account token and checks
// that RBAC applies to it: nothing is allowed until a role grants it.
func TestServerRBACAndToken(t *testing.T) {
	start := time.Now()
	s := Start(t, Options{})
	t.Logf("kube-apiserver ready in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	tok, err := s.ServiceAccountToken(ctx, "kube-system", "probe")
	if err != nil {
		t.Fatal(err)
	}
	kc := t.TempDir() + "/kubeconfig"
	if err := s.WriteKubeconfig(kc, tok); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = s.RESTConfig("").Dial // the server is in its namespace
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("listing nodes with no role worked: RBAC is not on")
	}
	admin, err := s.AdminClient()
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}}}}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bind := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "probe"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "probe", Namespace: "kube-system"}}}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, bind, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bound role never took effect: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
