package dist

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/weftnet/weft/subnet"
)

const manifestPath = "dist/kube-weft-etcd.yml"

// manifest is kube-weft-etcd.yml (the etcd-mode DaemonSet), decoded.
type manifest struct {
	serviceAccount *corev1.ServiceAccount
	configMap      *corev1.ConfigMap
	secret         *corev1.Secret
	daemonSet      *appsv1.DaemonSet
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// decodeStrict decodes one YAML document into obj as the API server does: YAML to JSON
// (refusing duplicate keys), then case-sensitive JSON decoding that refuses unknown and
// duplicate fields. (encoding/json would match "HostNetwork" to hostNetwork silently.)
func decodeStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := k8sjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// decodeManifest splits text into YAML documents and decodes each strictly into the
// Kubernetes type its apiVersion and kind name. Each kind must appear once.
func decodeManifest(text string) (*manifest, error) {
	m := &manifest{}
	for i, doc := range docSeparator.Split(text, -1) {
		var probe map[string]any
		if err := yaml.Unmarshal([]byte(doc), &probe); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(probe) == 0 {
			continue // comments only
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ServiceAccount":
			obj = &m.serviceAccount
		case "v1 ConfigMap":
			obj = &m.configMap
		case "v1 Secret":
			obj = &m.secret
		case "apps/v1 DaemonSet":
			obj = &m.daemonSet
		default:
			return nil, fmt.Errorf("document %d: unexpected apiVersion %q kind %q", i, tm.APIVersion, tm.Kind)
		}
		if !reflect.ValueOf(obj).Elem().IsNil() {
			return nil, fmt.Errorf("document %d: a second %s", i, tm.Kind)
		}
		if err := decodeStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
	}
	if m.serviceAccount == nil || m.configMap == nil || m.secret == nil || m.daemonSet == nil {
		return nil, fmt.Errorf("want a ServiceAccount, a ConfigMap, a Secret and a DaemonSet")
	}
	return m, nil
}

func loadManifest(t *testing.T) *manifest {
	t.Helper()
	m, err := decodeManifest(string(readRepoFile(t, manifestPath)))
	if err != nil {
		t.Fatalf("%s: %v", manifestPath, err)
	}
	return m
}

// TestManifestDecodeRejects: the strict decoding really catches typos: each mutation of the
// manifest must fail to decode.
func TestManifestDecodeRejects(t *testing.T) {
	text := string(readRepoFile(t, manifestPath))
	for _, mut := range []struct{ name, old, new string }{
		{"misspelt field", "      hostNetwork: true", "      hostNetwrok: true"},
		{"field in the wrong case", "      hostNetwork: true", "      HostNetwork: true"},
		{"duplicate field", "      hostNetwork: true", "      hostNetwork: true\n      hostNetwork: true"},
		{"field at the wrong level", "      priorityClassName: system-node-critical", "      priorityClassName: system-node-critical\n      privileged: false"},
		{"wrong type", "      hostNetwork: true", "      hostNetwork: \"yes\""},
		{"unknown kind", "kind: ServiceAccount", "kind: ServiceAcount"},
		{"unknown field in a capability list", `add: ["NET_ADMIN", "NET_RAW"]`, `add: ["NET_ADMIN", "NET_RAW"]
              addd: ["SYS_ADMIN"]`},
	} {
		t.Run(mut.name, func(t *testing.T) {
			if strings.Count(text, mut.old) < 1 {
				t.Fatalf("the manifest no longer contains %q; update the mutation", mut.old)
			}
			if _, err := decodeManifest(strings.Replace(text, mut.old, mut.new, 1)); err == nil {
				t.Errorf("decoding succeeded after the mutation %q -> %q", mut.old, mut.new)
			}
		})
	}
}

func TestManifestObjects(t *testing.T) {
	m := loadManifest(t)
	for _, om := range []metav1.ObjectMeta{m.serviceAccount.ObjectMeta, m.configMap.ObjectMeta, m.secret.ObjectMeta, m.daemonSet.ObjectMeta} {
		if om.Namespace != "kube-system" {
			t.Errorf("%s is in namespace %q, want kube-system", om.Name, om.Namespace)
		}
	}
	if m.serviceAccount.Name != "kube-weft" {
		t.Errorf("ServiceAccount %q, want kube-weft", m.serviceAccount.Name)
	}
	if a := m.serviceAccount.AutomountServiceAccountToken; a == nil || *a {
		t.Error("the ServiceAccount should not mount an API token: weftd never talks to the API server")
	}
	if m.configMap.Name != "kube-weft-cfg" || m.secret.Name != "weft-etcd-tls" || m.daemonSet.Name != "kube-weft" {
		t.Errorf("names: ConfigMap %q, Secret %q, DaemonSet %q", m.configMap.Name, m.secret.Name, m.daemonSet.Name)
	}

	// The ConfigMap: the network config is valid for weft, the CNI config is flannel's
	// standard one, the etcd endpoints are URLs weftd accepts.
	data := m.configMap.Data
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range data {
			if !yield(k) {
				return
			}
		}
	})
	if want := []string{"cni-conf.json", "etcd-endpoints", "net-conf.json"}; !slices.Equal(keys, want) {
		t.Errorf("ConfigMap keys %q, want %q", keys, want)
	}
	cfg, err := subnet.ParseConfig([]byte(data["net-conf.json"]))
	if err != nil {
		t.Errorf("net-conf.json is not a valid weft network config: %v", err)
	} else if cfg.Network.String() != "10.244.0.0/16" {
		t.Errorf("net-conf.json Network %s, want the conventional 10.244.0.0/16", cfg.Network)
	}
	var gotCNI, wantCNI any
	if err := json.Unmarshal([]byte(data["cni-conf.json"]), &gotCNI); err != nil {
		t.Errorf("cni-conf.json: %v", err)
	}
	const standardCNI = `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}`
	if err := json.Unmarshal([]byte(standardCNI), &wantCNI); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotCNI, wantCNI) {
		t.Errorf("cni-conf.json is not the standard flannel CNI config:\n%s\nwant (any layout):\n%s", data["cni-conf.json"], standardCNI)
	}
	for _, ep := range strings.Split(data["etcd-endpoints"], ",") {
		u, err := url.Parse(strings.TrimSpace(ep))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" {
			t.Errorf("etcd endpoint %q: want http(s)://host:port", ep)
		}
	}

	// The Secret holds the keys the pod's TLS settings name.
	for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
		_, inData := m.secret.Data[k]
		_, inString := m.secret.StringData[k]
		if !inData && !inString {
			t.Errorf("Secret %s has no key %s", m.secret.Name, k)
		}
	}
}

// podVolume returns the pod's volume named name.
func podVolume(t *testing.T, spec *corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %q in the pod", name)
	return corev1.Volume{}
}

// mountAt returns the container's volume mount at mountPath, or fails.
func mountAt(t *testing.T, c *corev1.Container, mountPath string) corev1.VolumeMount {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == mountPath {
			return vm
		}
	}
	t.Fatalf("container %s mounts nothing at %s", c.Name, mountPath)
	return corev1.VolumeMount{}
}

// mountFor returns the mount of c under which file lies.
func mountFor(c *corev1.Container, file string) (corev1.VolumeMount, bool) {
	for _, vm := range c.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			return vm, true
		}
	}
	return corev1.VolumeMount{}, false
}

// envOf resolves the container's environment: plain values, and configMapKeyRef values
// from the manifest's ConfigMap. Any other source is an error.
func envOf(t *testing.T, m *manifest, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("container %s sets %s twice", c.Name, e.Name)
		}
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := m.configMap.Data[ref.Key]
			if ref.Name != m.configMap.Name || !ok {
				t.Errorf("%s refers to ConfigMap %s key %s, which the manifest does not define", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		default:
			t.Errorf("%s: unexpected value source %+v", e.Name, e.ValueFrom)
		}
	}
	return env
}

func TestManifestDaemonSet(t *testing.T) {
	m := loadManifest(t)
	ds := m.daemonSet
	spec := &ds.Spec.Template.Spec

	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("the selector %v does not select the pod template's labels %v (%v)", ds.Spec.Selector, ds.Spec.Template.Labels, err)
	}
	if !spec.HostNetwork {
		t.Error("hostNetwork must be true: weftd configures the node's network")
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", spec.PriorityClassName)
	}
	if spec.ServiceAccountName != m.serviceAccount.Name {
		t.Errorf("serviceAccountName %q, want %q", spec.ServiceAccountName, m.serviceAccount.Name)
	}
	if a := spec.AutomountServiceAccountToken; a == nil || *a {
		t.Error("the pod should not mount an API token")
	}
	// Tolerate every taint: for each blocking effect, a toleration with no key and Exists.
	for _, effect := range []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute} {
		ok := false
		for _, tol := range spec.Tolerations {
			if tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == effect && tol.TolerationSeconds == nil {
				ok = true
			}
		}
		if !ok {
			t.Errorf("no toleration of every %s taint (operator: Exists, no key)", effect)
		}
	}
	// Every mount names a volume of the pod, and every volume is used.
	used := map[string]bool{}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, vm := range c.VolumeMounts {
			podVolume(t, spec, vm.Name)
			used[vm.Name] = true
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("container %s has no cpu and memory requests", c.Name)
		}
		if sc := c.SecurityContext; sc == nil || sc.Privileged == nil || *sc.Privileged ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: want privileged: false and allowPrivilegeEscalation: false", c.Name)
		} else if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s: want capabilities drop [ALL]", c.Name)
		}
	}
	for _, v := range spec.Volumes {
		if !used[v.Name] {
			t.Errorf("volume %s is mounted nowhere", v.Name)
		}
	}
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 1 {
		t.Fatalf("want one init container and one container, got %d and %d", len(spec.InitContainers), len(spec.Containers))
	}
	c := &spec.Containers[0]

	// The main container: weftd from the image, with NET_ADMIN and NET_RAW only.
	if len(c.Command) == 0 || c.Command[0] != parseDockerfile(t).weftdPath(t) {
		t.Errorf("command %q: want weftd at %s, where the image installs it", c.Command, parseDockerfile(t).weftdPath(t))
	}
	if c.Image != spec.InitContainers[0].Image {
		t.Errorf("the init container runs image %s, weftd %s: use the same", spec.InitContainers[0].Image, c.Image)
	}
	if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil {
		if got := slices.Sorted(slices.Values(sc.Capabilities.Add)); !slices.Equal(got, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) {
			t.Errorf("capabilities add %q, want [NET_ADMIN NET_RAW]", got)
		}
	}

	// Host paths weftd needs, mounted at the same place.
	for _, want := range []struct {
		path string
		typ  corev1.HostPathType
	}{
		{"/run/flannel", corev1.HostPathDirectoryOrCreate},
		{"/run/wireguard", corev1.HostPathDirectoryOrCreate},
		{"/dev/net/tun", corev1.HostPathCharDev},
		{"/run/xtables.lock", corev1.HostPathFileOrCreate},
	} {
		vm := mountAt(t, c, want.path)
		hp := podVolume(t, spec, vm.Name).HostPath
		if hp == nil || hp.Path != want.path || hp.Type == nil || *hp.Type != want.typ {
			t.Errorf("%s: want hostPath %s of type %s, got %+v", want.path, want.path, want.typ, hp)
		}
		if vm.ReadOnly {
			t.Errorf("%s is mounted read-only", want.path)
		}
	}

	// The environment: the etcd endpoints from the ConfigMap's one key, TLS files from the
	// Secret, every name a weftd flag.
	env := envOf(t, m, c)
	var endpointsRef *corev1.ConfigMapKeySelector
	for _, e := range c.Env {
		if e.Name == "WEFTD_ETCD_ENDPOINTS" && e.ValueFrom != nil {
			endpointsRef = e.ValueFrom.ConfigMapKeyRef
		}
		if !strings.HasPrefix(e.Name, "WEFTD_") {
			t.Errorf("env %s: use WEFTD_<FLAG> names", e.Name)
		}
	}
	if endpointsRef == nil || endpointsRef.Name != "kube-weft-cfg" || endpointsRef.Key != "etcd-endpoints" {
		t.Errorf("WEFTD_ETCD_ENDPOINTS must come from ConfigMap kube-weft-cfg key etcd-endpoints, got %+v", endpointsRef)
	}
	for _, name := range []string{"WEFTD_ETCD_CAFILE", "WEFTD_ETCD_CERTFILE", "WEFTD_ETCD_KEYFILE"} {
		file := env[name]
		vm, ok := mountFor(c, file)
		if !ok {
			t.Errorf("%s=%s lies in no mount", name, file)
			continue
		}
		sec := podVolume(t, spec, vm.Name).Secret
		if sec == nil || sec.SecretName != m.secret.Name {
			t.Errorf("%s=%s is not in the mount of Secret %s", name, file, m.secret.Name)
			continue
		}
		key := strings.TrimPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
		_, inData := m.secret.Data[key]
		_, inString := m.secret.StringData[key]
		if !inData && !inString {
			t.Errorf("%s=%s: the Secret has no key %s", name, file, key)
		}
		if !vm.ReadOnly {
			t.Errorf("the Secret is mounted writable at %s", vm.MountPath)
		}
		if sec.DefaultMode == nil || *sec.DefaultMode != 0o400 {
			t.Errorf("the Secret's files should be 0400 (readable by root only)")
		}
	}
	subnetFile := env["WEFTD_SUBNET_FILE"]
	if subnetFile == "" {
		subnetFile = "/run/flannel/subnet.env"
	}
	if path.Dir(subnetFile) != "/run/flannel" {
		t.Errorf("WEFTD_SUBNET_FILE %s is not in the /run/flannel host mount the CNI plugin reads", subnetFile)
	}

	// Probes: /readyz and /healthz on weftd's health endpoint, on the node's loopback.
	if env["WEFTD_HEALTHZ_IP"] != "127.0.0.1" || env["WEFTD_HEALTHZ_PORT"] == "" {
		t.Errorf("want WEFTD_HEALTHZ_IP=127.0.0.1 and a WEFTD_HEALTHZ_PORT, got %q and %q", env["WEFTD_HEALTHZ_IP"], env["WEFTD_HEALTHZ_PORT"])
	}
	for _, probe := range []struct {
		name  string
		p     *corev1.Probe
		route string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if probe.p == nil || probe.p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", probe.name)
			continue
		}
		g := probe.p.HTTPGet
		if g.Path != probe.route || g.Host != env["WEFTD_HEALTHZ_IP"] || g.Port != intstr.Parse(env["WEFTD_HEALTHZ_PORT"]) {
			t.Errorf("%s: GET %s:%s%s, want %s:%s%s", probe.name, g.Host, g.Port.String(), g.Path, env["WEFTD_HEALTHZ_IP"], env["WEFTD_HEALTHZ_PORT"], probe.route)
		}
	}

	// weftd knows every variable and accepts every value.
	bin := buildWeftd(t, "dist-test")
	flags := weftdFlags(t, bin)
	for name := range env {
		if _, ok := envFlag(flags, name); !ok {
			t.Errorf("env %s names no weftd flag (weftd would ignore it)", name)
		}
	}
	weftdAccepts(t, bin, flags, env)
}

// TestManifestInstallCNI runs the init container's command with its mounts replaced by
// temporary directories (a ConfigMap volume holds one file per key, as the kubelet writes
// it) and checks that it installs cni-conf.json as 10-weft.conflist, leaving nothing else.
func TestManifestInstallCNI(t *testing.T) {
	m := loadManifest(t)
	spec := &m.daemonSet.Spec.Template.Spec
	if len(spec.InitContainers) != 1 {
		t.Fatalf("want one init container, got %d", len(spec.InitContainers))
	}
	ic := &spec.InitContainers[0]
	netd := mountAt(t, ic, "/etc/cni/net.d")
	if hp := podVolume(t, spec, netd.Name).HostPath; hp == nil || hp.Path != "/etc/cni/net.d" {
		t.Fatalf("/etc/cni/net.d is not the host's: %+v", hp)
	}
	var cfgMount corev1.VolumeMount
	for _, vm := range ic.VolumeMounts {
		if cm := podVolume(t, spec, vm.Name).ConfigMap; cm != nil && cm.Name == m.configMap.Name {
			cfgMount = vm
		}
	}
	if cfgMount.Name == "" || len(ic.Command) < 3 || ic.Command[0] != "/bin/sh" || ic.Command[1] != "-c" {
		t.Fatalf("want the init container to mount ConfigMap %s and run /bin/sh -c SCRIPT, got mounts %+v command %q", m.configMap.Name, ic.VolumeMounts, ic.Command)
	}

	dir := t.TempDir()
	hostNetD := filepath.Join(dir, "net.d")
	cfgDir := filepath.Join(dir, "cfg")
	for _, d := range []string{hostNetD, cfgDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range m.configMap.Data {
		if err := os.WriteFile(filepath.Join(cfgDir, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A stale config from an earlier version is replaced.
	if err := os.WriteFile(filepath.Join(hostNetD, "10-weft.conflist"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := ic.Command[2]
	if strings.Contains(script, dir) || !strings.Contains(script, netd.MountPath) || !strings.Contains(script, cfgMount.MountPath) {
		t.Fatalf("the script does not use both mounts: %q", script)
	}
	script = strings.ReplaceAll(script, netd.MountPath, hostNetD)
	script = strings.ReplaceAll(script, cfgMount.MountPath, cfgDir)
	for i := 0; i < 2; i++ { // twice: a restarted init container must succeed again
		if res := run(t, nil, dir, "/bin/sh", "-c", script); res.code != 0 {
			t.Fatalf("init script %q: exit %d: %s", script, res.code, res.stderr)
		}
	}
	got, err := os.ReadFile(filepath.Join(hostNetD, "10-weft.conflist"))
	if err != nil || !bytes.Equal(got, []byte(m.configMap.Data["cni-conf.json"])) {
		t.Errorf("10-weft.conflist = %q, %v; want cni-conf.json", got, err)
	}
	if names := dirEntries(t, hostNetD); !slices.Equal(names, []string{"10-weft.conflist"}) {
		t.Errorf("/etc/cni/net.d holds %q; want only 10-weft.conflist", names)
	}
}
