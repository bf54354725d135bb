package wireguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/subnet"
)

func TestKeyFileCreatedOnceAndKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "flannel", "wgkey")
	k1, created, err := loadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("first start: created %v, %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if k, err := wgtypes.ParseKey(string(data)); err != nil || k != k1.k {
		t.Fatalf("the file does not hold the key as flanneld writes it (base64, no newline): %q %v", data, err)
	}
	k2, created, err := loadOrCreateKey(path)
	if err != nil || created || k2.k != k1.k {
		t.Fatalf("second start: created %v, same key %v, %v", created, k2.k == k1.k, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("left temporary files: %v", entries)
	}
}

// flanneld writes its key file with mode 0400 and no newline; an editor adds a newline.
func TestKeyFileOfFlanneldOrByHand(t *testing.T) {
	k, _ := wgtypes.GeneratePrivateKey()
	for _, c := range []struct {
		content string
		mode    os.FileMode
	}{{k.String(), 0o400}, {k.String() + "\n", 0o600}} {
		path := filepath.Join(t.TempDir(), "wgkey")
		if err := os.WriteFile(path, []byte(c.content), c.mode); err != nil {
			t.Fatal(err)
		}
		got, created, err := loadOrCreateKey(path)
		if err != nil || created || got.k != k {
			t.Errorf("mode %04o %q: created %v, %v", c.mode, c.content, created, err)
		}
	}
}

func TestKeyFileRefused(t *testing.T) {
	k, _ := wgtypes.GeneratePrivateKey()
	secret := k.String()
	for _, c := range []struct {
		name    string
		content string
		mode    os.FileMode
		want    []string
	}{
		{"group readable", secret, 0o640, []string{"mode 0640", "group or others", "chmod 600"}},
		{"world readable", secret, 0o644, []string{"mode 0644", "chmod 600"}},
		{"group writable", secret, 0o620, []string{"mode 0620"}},
		{"garbage", "hello", 0o600, []string{"does not hold a WireGuard private key"}},
		{"half a key", secret[:20], 0o600, []string{"does not hold a WireGuard private key"}},
		{"zero key", wgtypes.Key{}.String(), 0o600, []string{"all-zero"}},
	} {
		path := filepath.Join(t.TempDir(), "wgkey")
		if err := os.WriteFile(path, []byte(c.content), c.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, c.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		_, _, err := loadOrCreateKey(path)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		msg := err.Error()
		for _, w := range append(c.want, path, KeyFileEnv) {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q lacks %q", c.name, msg, w)
			}
		}
		if strings.Contains(msg, secret) || strings.Contains(msg, secret[:20]) {
			t.Errorf("%s: the error shows the key: %s", c.name, msg)
		}
		if c.mode&0o077 != 0 && !errors.Is(err, ErrKeyFileMode) {
			t.Errorf("%s: %v does not wrap ErrKeyFileMode", c.name, err)
		}
	}
	dir := t.TempDir()
	if _, _, err := loadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as key file: %v", err)
	}
}

func TestPrivateKeyNeverFormats(t *testing.T) {
	k, _ := wgtypes.GeneratePrivateKey()
	p := privateKey{k}
	js, _ := json.Marshal(struct{ K privateKey }{p})
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%v %+v %#v %s %q %x", p, p, p, p, p, p), string(js), fmt.Sprint(&p)} {
		if strings.Contains(s, k.String()) || strings.Contains(s, fmt.Sprintf("%x", k[:])) || strings.Contains(s, fmt.Sprint(k[:4])) {
			t.Errorf("formatted private key shows it: %s", s)
		}
	}
}

func TestBackendDataAsFlanneld(t *testing.T) {
	k, _ := wgtypes.GeneratePrivateKey()
	pub := k.PublicKey()
	if got, want := string(backendData(pub)), `{"PublicKey":"`+pub.String()+`"}`; got != want {
		t.Fatalf("BackendData %s, want %s", got, want)
	}
	attrs := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.1"), BackendType: Name, BackendData: backendData(pub)}
	if got, err := peerKey(attrs); err != nil || got != pub {
		t.Fatalf("peerKey = %v, %v", got, err)
	}
}

func TestCheckPeerData(t *testing.T) {
	k, _ := wgtypes.GeneratePrivateKey()
	pub := k.PublicKey().String()
	for data, want := range map[string]string{
		`{"PublicKey":"` + pub + `"}`:                "",
		`{"PublicKey":"` + pub + `","ListenPort":1}`: "", // extra fields are ignored, as flanneld does
		``:                                 "no BackendData",
		`null`:                             "no BackendData",
		`{}`:                               "no PublicKey",
		`{"PublicKey":""}`:                 "no PublicKey",
		`{"PublicKey":"abc"}`:              `"abc" is not a WireGuard key`,
		`{"PublicKey":"` + pub[:40] + `"}`: "is not a WireGuard key",
		`{"PublicKey":"` + wgtypes.Key{}.String() + `"}`: "all-zero",
		`{"PublicKey":7}`: "not a JSON object with a string PublicKey",
		`"` + pub + `"`:   "not a JSON object",
	} {
		err := CheckPeerData(subnet.LeaseAttrs{BackendType: Name, BackendData: json.RawMessage(data)})
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("CheckPeerData(%s) = %v, want %q", data, err, want)
		}
	}
}

// TestPeerKeyOfBothFamilies: the key comes from BackendData, or from BackendV6Data in a
// lease without IPv4 data (an IPv6-only lease); data of both must name the same key.
func TestPeerKeyOfBothFamilies(t *testing.T) {
	k1, _ := wgtypes.GeneratePrivateKey()
	k2, _ := wgtypes.GeneratePrivateKey()
	p1, p2 := k1.PublicKey(), k2.PublicKey()
	for _, c := range []struct {
		name   string
		v4, v6 json.RawMessage
		want   wgtypes.Key
		err    string
	}{
		{"both, same key", backendData(p1), backendData(p1), p1, ""},
		{"IPv6 data only", nil, backendData(p2), p2, ""},
		{"IPv4 data only", backendData(p1), nil, p1, ""},
		{"different keys", backendData(p1), backendData(p2), wgtypes.Key{}, "different public keys"},
		{"bad IPv6 data", backendData(p1), json.RawMessage(`{}`), wgtypes.Key{}, "BackendV6Data has no PublicKey"},
		{"neither", nil, nil, wgtypes.Key{}, "no BackendData"},
	} {
		got, err := peerKey(subnet.LeaseAttrs{BackendData: c.v4, BackendV6Data: c.v6})
		if got != c.want || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: peerKey = %v, %v; want %v, %q", c.name, got, err, c.want, c.err)
		}
	}
}

func FuzzCheckPeerData(f *testing.F) {
	f.Add(`{"PublicKey":"FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="}`)
	f.Add(`{"PublicKey":null}`)
	f.Fuzz(func(t *testing.T, data string) {
		attrs := subnet.LeaseAttrs{BackendData: json.RawMessage(data)}
		k, err := peerKey(attrs)
		if err == nil && k == (wgtypes.Key{}) {
			t.Fatal("accepted the zero key")
		}
	})
}
