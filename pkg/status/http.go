package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
)

// maxDocumentSize bounds what Fetch reads: a status document with thousands of peers is
// far below it.
const maxDocumentSize = 16 << 20

// Handler serves the Status returned by get as indented JSON, calling get once per
// request. Only GET and HEAD are allowed; other methods get 405 with an Allow header.
// get must be safe to call from concurrent requests and should not block. Handler does
// not change what get returns, except that a nil Peers list is served as [].
//
// weftd mounts it on its health server as "GET " + Path.
func Handler(get func() Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: use GET", http.StatusMethodNotAllowed)
			return
		}
		s := get()
		if s.Peers == nil {
			s.Peers = []Peer{}
		}
		body, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			http.Error(w, "encode status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(append(body, '\n')) // a write error means the client went away
		}
	})
}

// Fetch gets the Status from a weftd health endpoint at addr (host:port), with client
// (http.DefaultClient when nil), bounded by ctx. A status other than 200 or a body that is
// not a Status is an error naming the URL.
func Fetch(ctx context.Context, client *http.Client, addr string) (Status, error) {
	if client == nil {
		client = http.DefaultClient
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return Status{}, fmt.Errorf("weftd address %q is not host:port: %w", addr, err)
	}
	url := "http://" + addr + Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Status{}, fmt.Errorf("GET %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return Status{}, err // a *url.Error, naming the method and the URL
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize))
	if err != nil {
		return Status{}, fmt.Errorf("GET %s: reading the body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Status{}, &HTTPError{URL: url, Code: resp.StatusCode, Body: string(body)}
	}
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		return Status{}, fmt.Errorf("GET %s: not a status document: %w", url, err)
	}
	return s, nil
}

// HTTPError is Fetch's error for a response other than 200, e.g. 404 from a weftd that
// does not serve Path.
type HTTPError struct {
	URL  string
	Code int
	Body string // at most the first 16 MiB
}

func (e *HTTPError) Error() string {
	body := e.Body
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	return fmt.Sprintf("GET %s: %d %s: %q", e.URL, e.Code, http.StatusText(e.Code), body)
}
