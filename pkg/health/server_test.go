package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func readyState() *State {
	st := NewState(nil)
	st.SetLease(netip.MustParsePrefix("10.244.3.0/24"))
	st.SetSubnetFile("/run/flannel/subnet.env")
	st.SetBackend("vxlan", true)
	return st
}

func TestHandlers(t *testing.T) {
	notReady := NewState(nil)
	notReady.SetLease(netip.MustParsePrefix("10.244.3.0/24"))
	notReady.SetError(errors.New("vxlan: device busy"))
	status := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "status page") })

	for _, tc := range []struct {
		name         string
		st           *State
		method, path string
		accept       string
		code         int
		body         []string // substrings
		json         bool
	}{
		{name: "healthz", st: notReady, method: "GET", path: "/healthz", code: 200, body: []string{"ok"}},
		{name: "healthz head", st: notReady, method: "HEAD", path: "/healthz", code: 200},
		{name: "healthz post", st: notReady, method: "POST", path: "/healthz", code: 405},
		{name: "ready", st: readyState(), method: "GET", path: "/readyz", code: 200, body: []string{"ok"}},
		{name: "not ready", st: notReady, method: "GET", path: "/readyz", code: 503,
			body: []string{"not ready\n", "missing: subnet file (not written)\n", "missing: backend (not active)\n", "last error: vxlan: device busy\n"}},
		{name: "verbose", st: notReady, method: "GET", path: "/readyz?verbose", code: 503, json: true,
			body: []string{`"ready": false`, `"subnet": "10.244.3.0/24"`, `"lastError": "vxlan: device busy"`}},
		{name: "verbose ready", st: readyState(), method: "GET", path: "/readyz?verbose=1", code: 200, json: true, body: []string{`"ready": true`}},
		{name: "accept json", st: notReady, method: "GET", path: "/readyz", accept: "text/html;q=0.9, application/json;q=0.8", code: 503, json: true},
		{name: "accept text", st: notReady, method: "GET", path: "/readyz", accept: "text/plain", code: 503, body: []string{"missing: backend"}},
		{name: "extra", st: notReady, method: "GET", path: "/status", code: 200, body: []string{"status page"}},
		{name: "unknown", st: notReady, method: "GET", path: "/nope", code: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer("127.0.0.1:0", tc.st, map[string]http.Handler{"/status": status})
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d; body %q", rec.Code, tc.code, rec.Body)
			}
			body := rec.Body.String()
			for _, want := range tc.body {
				if !strings.Contains(body, want) {
					t.Errorf("body %q lacks %q", body, want)
				}
			}
			if tc.json {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				var snap Snapshot
				if err := json.Unmarshal(rec.Body.Bytes(), &snap); err != nil {
					t.Fatalf("not JSON: %v: %s", err, body)
				}
				if want := tc.st.Snapshot(); snap.Ready != want.Ready || snap.Subnet != want.Subnet || len(snap.Missing) != len(want.Missing) {
					t.Errorf("decoded %+v, want %+v", snap, want)
				}
			}
		})
	}
}

func TestRunServesOnRealListenerAndStops(t *testing.T) {
	st := NewState(nil)
	s := NewServer("127.0.0.1:0", st, map[string]http.Handler{
		"GET /status": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up") }),
	})
	if s.Addr() != nil {
		t.Fatal("Addr before Listen should be nil")
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil { // idempotent
		t.Fatal(err)
	}
	base := "http://" + s.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("/readyz before facts: %d", code)
	}
	st.SetLease(netip.MustParsePrefix("10.244.3.0/24"))
	st.SetSubnetFile("/run/flannel/subnet.env")
	st.SetBackend("vxlan", true)
	if code, body := get("/readyz"); code != 200 || body != "ok" {
		t.Fatalf("/readyz with all facts: %d %q", code, body)
	}
	if code, body := get("/status"); code != 200 || body != "up" {
		t.Fatalf("/status: %d %q", code, body)
	}

	cancel()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := client.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after Run returned")
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("a second Run should fail")
	}
}

func TestRunShutdownIsBounded(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s := NewServer("127.0.0.1:0", NewState(nil), map[string]http.Handler{
		"/hang": http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			close(entered)
			<-release // ignores its context: only Close can end the connection
		}),
	})
	s.shutdownTimeout = 200 * time.Millisecond
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	go func() {
		c := &http.Client{Timeout: 10 * time.Second}
		if resp, err := c.Get("http://" + s.Addr().String() + "/hang"); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the handler")
	}
	start := time.Now()
	cancel()
	// The handler never returns on its own: Run returning at all proves the bound. The
	// time (about the 200 ms shutdownTimeout) is logged; 15 s catches a Run that waits.
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		t.Logf("Run returned %v after its context ended (shutdownTimeout %v)", time.Since(start).Round(time.Millisecond), s.shutdownTimeout)
	case <-time.After(15 * time.Second):
		t.Fatal("Run blocked on a hanging request")
	}
}

func TestListenErrors(t *testing.T) {
	h := http.NotFoundHandler()
	for name, extra := range map[string]map[string]http.Handler{
		"conflict with readyz": {"GET /readyz": h},
		"nil handler":          {"/metrics": nil},
		"bad pattern":          {"GET": h},
	} {
		s := NewServer("127.0.0.1:0", NewState(nil), extra)
		if err := s.Listen(); err == nil {
			t.Errorf("%s: Listen succeeded", name)
		}
		if err := s.Run(context.Background()); err == nil {
			t.Errorf("%s: Run succeeded", name)
		}
	}

	busy := NewServer("127.0.0.1:0", NewState(nil), nil)
	if err := busy.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t.Cleanup(func() { _ = busy.Run(ctx) }) // closes its listener
	again := NewServer(busy.Addr().String(), NewState(nil), nil)
	if err := again.Run(context.Background()); err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("Run on a busy port: %v, want an error naming the address", err)
	}
}
