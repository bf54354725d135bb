package kernel

// InNamespace runs fn on a locked OS thread in h's network namespace, for what only the
// calling thread's namespace decides: opening a TUN queue (which creates the device
// there) or writing /proc/sys/net. When the thread already is there (weftd in its own
// namespace), nothing is switched. It fails, without calling fn, if h is closed.
func (h *Handle) InNamespace(fn func() error) error {
	if err := h.check(); err != nil {
		return err
	}
	return inNamespace(h.ns, fn)
}
