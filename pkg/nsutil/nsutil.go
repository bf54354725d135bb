// Package nsutil runs code inside a named network namespace on a locked OS thread.
//
// Do follows the CNI rule: the thread is locked for the switch, and if switching back fails
// the thread stays locked, so the Go runtime discards it instead of reusing a thread that is
// in the wrong namespace. It creates no namespace: throwaway namespaces for tests are made by
// test/nstest, which product code never imports.
package nsutil

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn with the calling goroutine's thread switched into the named namespace.
// Sockets created inside fn stay in that namespace after Do returns.
func Do(name string, fn func() error) error {
	target, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("netns %q: %w", name, err)
	}
	defer target.Close()
	return DoHandle(target, fn)
}

// DoHandle is Do for an open namespace handle.
func DoHandle(target netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime ends it when this goroutine exits.
		return fmt.Errorf("return from netns: %w (after: %v)", err, ferr)
	}
	runtime.UnlockOSThread()
	return ferr
}
