package wireguard

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"golang.zx2c4.com/wireguard/device"
	"k8s.io/klog/v2"
)

// The configuration socket of a userspace device: wireguard-go's own binary serves its
// configuration protocol on <SocketDir>/<device>.sock, and `wg` looks there for a device
// the kernel does not know. weftd does the same, so `wg show flannel-wg` (and `wg set`)
// work on a userspace device as they do on flanneld's kernel one.
const (
	// DefaultSocketDir is where `wg` looks for the sockets of userspace devices.
	DefaultSocketDir = "/var/run/wireguard"
	// SocketDirEnv overrides DefaultSocketDir (weft's own variable: flanneld has no
	// userspace WireGuard). Empty or "-" serves no socket.
	SocketDirEnv = "WEFT_WIREGUARD_SOCKET_DIR"
)

// socketDirFromEnv returns the directory of the configuration sockets: $SocketDirEnv, or
// DefaultSocketDir when it is unset; "" (no socket) when it is set to "" or "-".
func socketDirFromEnv() string {
	d, ok := os.LookupEnv(SocketDirEnv)
	switch {
	case !ok:
		return DefaultSocketDir
	case d == "-":
		return ""
	}
	return d
}

// serveUAPI listens on <dir>/<name>.sock, readable and writable by the owner only (the
// protocol reads out the private key, as `wg showconf` does), and serves each connection
// with dev.IpcHandle; changed runs after each connection ends, so that a peer removed or
// changed by hand is compared with the leases at once. A stale socket left by a killed
// weftd is replaced; a socket another process serves is left alone (an error). Closing
// the listener removes the socket.
func serveUAPI(dir, name string, dev *device.Device, changed func(), log klog.Logger) (net.Listener, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("configuration socket directory: %w", err)
	}
	path := filepath.Join(dir, name+".sock")
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("configuration socket %s is served by another process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove the stale configuration socket %s: %w", path, err)
	}
	// Created with the process's umask (no write for others, so nobody else can connect
	// meanwhile), then restricted to the owner.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("configuration socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("configuration socket %s: %w", path, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.EINVAL) {
					log.Error(err, "Configuration socket stopped", "socket", path)
				}
				return
			}
			go func() {
				dev.IpcHandle(c)
				changed()
			}()
		}
	}()
	log.V(1).Info("Serving the device's configuration socket", "socket", path)
	return ln, nil
}
