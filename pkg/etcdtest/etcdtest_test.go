package etcdtest

import (
	"net/http"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t, Options{})
	get := func() error {
		resp, err := http.Get(s.Endpoint() + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(); err != nil {
		t.Fatalf("etcd not serving: %v", err)
	}
	s.Stop()
	if err := get(); err == nil {
		t.Fatal("etcd still serving after Stop")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := get(); err != nil {
		t.Fatalf("etcd not serving after restart: %v", err)
	}
}
