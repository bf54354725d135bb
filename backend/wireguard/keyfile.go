package wireguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/subnet"
)

// DefaultKeyFile is where the node's private key is kept (flanneld's path); the
// environment variable KeyFileEnv overrides it.
const (
	DefaultKeyFile = "/run/flannel/wgkey"
	KeyFileEnv     = "WIREGUARD_KEY_FILE"
)

// privateKey is the node's WireGuard private key. It formats as a placeholder, so that
// no log line, error or status can carry it by accident; only uapiHex and the kernel
// configuration see the bytes.
type privateKey struct{ k wgtypes.Key }

const redacted = "(private key)"

func (privateKey) String() string               { return redacted }
func (privateKey) Format(f fmt.State, _ rune)   { fmt.Fprint(f, redacted) }
func (privateKey) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// public returns the public key that belongs to the private key.
func (p privateKey) public() wgtypes.Key { return p.k.PublicKey() }

// keyFileError says why the key file cannot be used; it never contains the key.
type keyFileError struct {
	Path string
	Err  error
}

func (e *keyFileError) Error() string {
	return fmt.Sprintf("wireguard backend: private key file %s (%s overrides the path): %v", e.Path, KeyFileEnv, e.Err)
}

func (e *keyFileError) Unwrap() error { return e.Err }

// ErrKeyFileMode is wrapped by the error for a key file that group or others may read
// or write.
var ErrKeyFileMode = errors.New("key file permissions too open")

// loadOrCreateKey returns the private key kept in path. On first use (no file) it
// generates one and writes it as flanneld does, base64 without a newline, mode 0600, in
// a directory it creates (0755, as /run/flannel also holds subnet.env). A file that is
// not a regular file, that group or others may access, or that does not hold a key is
// refused. created reports a new key.
func loadOrCreateKey(path string) (k privateKey, created bool, err error) {
	fail := func(err error) (privateKey, bool, error) {
		return privateKey{}, false, &keyFileError{Path: path, Err: err}
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k, err := createKeyFile(path)
		if err != nil {
			return fail(err)
		}
		return k, true, nil
	case err != nil:
		return fail(err)
	case !fi.Mode().IsRegular():
		return fail(fmt.Errorf("not a regular file (%s)", fi.Mode().Type()))
	case fi.Mode().Perm()&0o077 != 0:
		return fail(fmt.Errorf("%w: mode %04o lets group or others at the key; run chmod 600 %s (or delete the file to make a new key)",
			ErrKeyFileMode, fi.Mode().Perm(), path))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fail(err)
	}
	key, err := parseKey(string(data))
	if err != nil {
		return fail(fmt.Errorf("does not hold a WireGuard private key: %v (delete it to make a new key)", err))
	}
	if key == (wgtypes.Key{}) {
		return fail(errors.New("holds the all-zero key (delete it to make a new key)"))
	}
	return privateKey{key}, false, nil
}

// createKeyFile generates a key and writes it to path atomically: to a 0600 temporary
// file in the same directory, then hard-linked into place, which fails if another
// process made the file meanwhile (its key is then used).
func createKeyFile(path string) (privateKey, error) {
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return privateKey{}, fmt.Errorf("generate a key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return privateKey{}, err
	}
	tmp, err := os.CreateTemp(dir, ".wgkey-*")
	if err != nil {
		return privateKey{}, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return privateKey{}, err
	}
	if _, err := tmp.WriteString(key.String()); err != nil {
		tmp.Close()
		return privateKey{}, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return privateKey{}, err
	}
	if err := tmp.Close(); err != nil {
		return privateKey{}, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			k, _, err := loadOrCreateKey(path)
			return k, err
		}
		return privateKey{}, err
	}
	return privateKey{key}, nil
}

// leaseData is the lease's BackendData, exactly as flanneld writes it: {"PublicKey":"<base64>"}.
type leaseData struct {
	PublicKey string
}

// backendData returns the BackendData that publishes the public key pub.
func backendData(pub wgtypes.Key) json.RawMessage {
	b, _ := json.Marshal(leaseData{PublicKey: pub.String()})
	return b
}

// peerKey returns the public key a peer lease publishes: in its BackendData, or, in a
// lease without IPv4 data, its BackendV6Data (flanneld writes the same
// {"PublicKey": ...} into both when its network runs both families). Data of both that
// name different keys is refused. Extra fields are ignored, as flanneld ignores them.
func peerKey(attrs subnet.LeaseAttrs) (wgtypes.Key, error) {
	has := func(d json.RawMessage) bool { return len(d) > 0 && string(d) != "null" }
	if !has(attrs.BackendData) && has(attrs.BackendV6Data) {
		return keyIn("BackendV6Data", attrs.BackendV6Data)
	}
	k, err := keyIn("BackendData", attrs.BackendData)
	if err != nil || !has(attrs.BackendV6Data) {
		return k, err
	}
	k6, err := keyIn("BackendV6Data", attrs.BackendV6Data)
	if err != nil {
		return wgtypes.Key{}, err
	}
	if k6 != k {
		return wgtypes.Key{}, fmt.Errorf("BackendData and BackendV6Data name different public keys (%s, %s)", k, k6)
	}
	return k, nil
}

// keyIn parses the public key of one backend data field, named field in errors.
func keyIn(field string, data json.RawMessage) (wgtypes.Key, error) {
	if len(data) == 0 || string(data) == "null" {
		return wgtypes.Key{}, fmt.Errorf("no %s: a wireguard lease carries {\"PublicKey\": ...}", field)
	}
	var d leaseData
	if err := json.Unmarshal(data, &d); err != nil {
		return wgtypes.Key{}, fmt.Errorf("%s is not a JSON object with a string PublicKey: %v", field, err)
	}
	if d.PublicKey == "" {
		return wgtypes.Key{}, fmt.Errorf("%s has no PublicKey", field)
	}
	k, err := wgtypes.ParseKey(d.PublicKey)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("%s PublicKey %q is not a WireGuard key (32 bytes, standard base64)", field, d.PublicKey)
	}
	if k == (wgtypes.Key{}) {
		return wgtypes.Key{}, fmt.Errorf("%s PublicKey is the all-zero key", field)
	}
	return k, nil
}

// CheckPeerData is the Type's CheckPeerData: a peer lease must carry a usable public key.
func CheckPeerData(attrs subnet.LeaseAttrs) error {
	_, err := peerKey(attrs)
	return err
}
