// Command weft-cni is the CNI plugin of the flannel conflist ("type": "flannel"), served by
// weft: install it as /opt/cni/bin/flannel. Like flannel's own plugin it reads weftd's
// subnet file (/run/flannel/subnet.env) and delegates to the standard plugins, bridge with
// host-local IPAM by default, which it does not contain: they are built from
// github.com/containernetworking/plugins and installed beside it.
//
// Serving the flannel type, rather than a "weft" type of its own, keeps a kube-flannel
// node's conflist (10-flannel.conflist) working as it is: a node moves to weft without a
// new CNI configuration, and its keys (delegate, subnetFile, dataDir, ipam) mean the same.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/weftnet/weft/pkg/subnetenv"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	defaultSubnetFile = "/run/flannel/subnet.env"
	defaultDataDir    = "/var/lib/cni/flannel"
)

// netConf is the plugin's configuration, with flannel's keys.
type netConf struct {
	types.NetConf
	SubnetFile    string         `json:"subnetFile"`
	DataDir       string         `json:"dataDir"`
	Delegate      map[string]any `json:"delegate"`
	IPAM          map[string]any `json:"ipam,omitempty"` // merged into the delegate's IPAM
	RuntimeConfig map[string]any `json:"runtimeConfig,omitempty"`
}

func loadConf(stdin []byte) (*netConf, error) {
	n := &netConf{SubnetFile: defaultSubnetFile, DataDir: defaultDataDir}
	if err := json.Unmarshal(stdin, n); err != nil {
		return nil, fmt.Errorf("network config: %w", err)
	}
	return n, nil
}

// delegateConf is the config handed to the delegate plugin, decided from the plugin's config
// and the subnet file as flannel's plugin does: the delegate's own keys win; the type
// defaults to bridge; mtu from the subnet file; ipMasq unless weftd masquerades; a bridge is
// the pods' gateway; host-local IPAM over the node's subnet, routing the whole network.
func delegateConf(n *netConf, env subnetenv.Env) (map[string]any, error) {
	d := map[string]any{}
	for k, v := range n.Delegate {
		d[k] = v
	}
	d["name"] = n.Name
	d["cniVersion"] = n.CNIVersion
	if _, ok := d["type"]; !ok {
		d["type"] = "bridge"
	}
	if _, ok := d["ipMasq"]; !ok {
		d["ipMasq"] = !env.IPMasq
	}
	if _, ok := d["mtu"]; !ok {
		d["mtu"] = env.MTU
	}
	if d["type"] == "bridge" {
		if _, ok := d["isGateway"]; !ok {
			d["isGateway"] = true
		}
	}
	ipam := map[string]any{}
	for k, v := range n.IPAM {
		ipam[k] = v
	}
	if _, ok := ipam["type"]; !ok {
		ipam["type"] = "host-local"
	}
	ipam["ranges"] = [][]map[string]any{{{"subnet": env.Subnet.Masked().String()}}}
	ipam["routes"] = []map[string]any{{"dst": env.Network.String()}}
	d["ipam"] = ipam
	if len(n.RuntimeConfig) > 0 {
		d["runtimeConfig"] = n.RuntimeConfig
	}
	if _, ok := d["type"].(string); !ok {
		return nil, fmt.Errorf("delegate type %v is not a plugin name", d["type"])
	}
	return d, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	n, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	env, err := subnetenv.Read(n.SubnetFile)
	if err != nil {
		return fmt.Errorf("read %s (is weftd running?): %w", n.SubnetFile, err)
	}
	d, err := delegateConf(n, env)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return err
	}
	// Kept for DEL and CHECK, which must use the config ADD used even if the subnet file
	// changed since.
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(n.DataDir, args.ContainerID)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return err
	}
	res, err := invoke.DelegateAdd(context.TODO(), d["type"].(string), raw, nil)
	if err != nil {
		_ = os.Remove(path)
		return err
	}
	return types.PrintResult(res, n.CNIVersion)
}

// saved returns the delegate config ADD used for the container, or nil if there is none,
// with the runtime's prevResult (the result of ADD, which CHECK and DEL are given) passed on.
func saved(n *netConf, containerID string) (map[string]any, []byte, error) {
	raw, err := os.ReadFile(filepath.Join(n.DataDir, containerID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, nil, fmt.Errorf("saved config of %s: %w", containerID, err)
	}
	if _, ok := d["type"].(string); !ok {
		return nil, nil, fmt.Errorf("saved config of %s has no type", containerID)
	}
	if n.RawPrevResult != nil {
		d["prevResult"] = n.RawPrevResult
		if raw, err = json.Marshal(d); err != nil {
			return nil, nil, err
		}
	}
	return d, raw, nil
}

func cmdDel(args *skel.CmdArgs) error {
	n, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	d, raw, err := saved(n, args.ContainerID)
	if err != nil || d == nil {
		return err // nothing added, nothing to delete
	}
	if err := invoke.DelegateDel(context.TODO(), d["type"].(string), raw, nil); err != nil {
		return err
	}
	return os.Remove(filepath.Join(n.DataDir, args.ContainerID))
}

func cmdCheck(args *skel.CmdArgs) error {
	n, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	d, raw, err := saved(n, args.ContainerID)
	if err != nil {
		return err
	}
	if d == nil {
		return fmt.Errorf("container %s was not added by this plugin", args.ContainerID)
	}
	return invoke.DelegateCheck(context.TODO(), d["type"].(string), raw, nil)
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck},
		cniversion.All, "weft-cni (the flannel CNI plugin, served by weft) "+version)
}
