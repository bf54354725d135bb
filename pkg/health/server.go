package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// defaultShutdownTimeout bounds how long Run waits for in-flight requests once its context
// ends; the remaining connections are then closed.
const defaultShutdownTimeout = 5 * time.Second

// Server serves the health endpoints over HTTP:
//
//   - GET /healthz: 200 "ok" while the process serves at all.
//   - GET /readyz: 200 "ok" when the lease is held, the subnet file written and the backend
//     active; else 503 with one "missing: ..." line per fact that does not hold (and the
//     last error, if any). With ?verbose (any value) or an Accept header naming
//     application/json, the body is the Snapshot as JSON, with the same status code.
//   - the extra handlers, each at its ServeMux pattern (e.g. "/metrics", "GET /status").
//
// Use: NewServer, then optionally Listen (to learn Addr, e.g. with port 0, before serving),
// then Run once. Addr, Listen and Run may be called from different goroutines.
type Server struct {
	addr            string
	handler         http.Handler
	setupErr        error         // an unusable extra handler, reported by Listen and Run
	shutdownTimeout time.Duration // set at construction; tests shorten it

	mu  sync.Mutex   // guards ln and ran
	ln  net.Listener // nil until Listen succeeds
	ran bool         // Run was called
}

// NewServer returns a server for addr (host:port; port 0 picks a free one) reporting st.
// extra maps ServeMux patterns to handlers mounted beside /healthz and /readyz; a nil
// handler or a pattern that conflicts with another makes Listen and Run fail.
func NewServer(addr string, st *State, extra map[string]http.Handler) *Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		serveReady(w, r, st.Snapshot())
	})
	var errs []error
	patterns := make([]string, 0, len(extra))
	for p := range extra {
		patterns = append(patterns, p)
	}
	slices.Sort(patterns)
	for _, p := range patterns {
		if err := handle(mux, p, extra[p]); err != nil {
			errs = append(errs, err)
		}
	}
	return &Server{addr: addr, handler: mux, setupErr: errors.Join(errs...), shutdownTimeout: defaultShutdownTimeout}
}

// handle mounts h at pattern, turning ServeMux's panic on a bad or conflicting pattern into
// an error.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	if h == nil {
		return fmt.Errorf("health server: nil handler for %q", pattern)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("health server: cannot mount %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// Handler returns the server's routes, for tests (httptest) and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds the address. It is idempotent; after it succeeds, Addr reports the bound
// address. Run calls it if it has not been called.
func (s *Server) Listen() error {
	if s.setupErr != nil {
		return s.setupErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("health server: listen on %s: %w", s.addr, err)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address, or nil before Listen (or Run) has bound it.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Run listens (unless Listen did already) and serves until ctx ends, then shuts down
// gracefully: in-flight requests get a bounded time (5 s) to finish before their connections
// are closed. The listener is closed when Run returns. It returns nil when ctx ended, or the
// error that stopped the server (including a failed Listen). Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln, ran := s.ln, s.ran
	s.ran = true
	s.mu.Unlock()
	if ran {
		return errors.New("health server: Run called twice")
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("health server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // the deadline passed: drop the remaining connections
	}
	<-served // Serve returns as soon as Shutdown has closed the listener
	return nil
}

// missingText explains a missing fact for the /readyz text body.
func missingText(fact string) string {
	switch fact {
	case FactLease:
		return "no subnet lease held"
	case FactSubnetFile:
		return "not written"
	case FactBackend:
		return "not active"
	}
	return "does not hold"
}

func serveReady(w http.ResponseWriter, r *http.Request, snap Snapshot) {
	code := http.StatusOK
	if !snap.Ready {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snap) // a write error means the client went away
		return
	}
	if snap.Ready {
		writeText(w, code, "ok")
		return
	}
	var b strings.Builder
	b.WriteString("not ready\n")
	for _, m := range snap.Missing {
		fmt.Fprintf(&b, "missing: %s (%s)\n", m, missingText(m))
	}
	if snap.LastError != "" {
		fmt.Fprintf(&b, "last error: %s\n", snap.LastError)
	}
	writeText(w, code, b.String())
}

// wantsJSON reports whether the request asks for the verbose JSON form.
func wantsJSON(r *http.Request) bool {
	if r.URL.Query().Has("verbose") {
		return true
	}
	for _, accept := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(accept, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/json" {
				return true
			}
		}
	}
	return false
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}
