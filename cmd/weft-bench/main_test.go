package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/bench"
)

func TestParseFlags(t *testing.T) {
	d, q := bench.Defaults(), bench.QuickDefaults()
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o bench.Options)
	}{
		{"defaults", nil, func(t *testing.T, o bench.Options) {
			if o.Duration != d.Duration || o.Reps != 3 || o.Joins != 20 || o.Scale != 2000 || o.Out != "results" ||
				!slices.Equal(o.Streams, []int{1, 4}) || !slices.Equal(o.Backends, bench.BackendNames()) || o.Quick {
				t.Errorf("%+v", o)
			}
		}},
		{"the brief's command line", strings.Fields("-out results -duration 10s -reps 3 -joins 20 -scale 2000 -backends host-gw,vxlan,udp,udp-nobatch,gre"),
			func(t *testing.T, o bench.Options) {
				if !slices.Equal(o.Backends, []string{"host-gw", "vxlan", "udp", "udp-nobatch", "gre"}) || o.Duration != 10*time.Second {
					t.Errorf("%+v", o)
				}
			}},
		{"quick changes the defaults", []string{"-quick"}, func(t *testing.T, o bench.Options) {
			if !o.Quick || o.Duration != q.Duration || o.Reps != q.Reps || o.Joins != q.Joins || o.Scale != q.Scale ||
				o.Timeout != q.Timeout || o.PingCount != q.PingCount {
				t.Errorf("%+v", o)
			}
		}},
		{"flags given win over quick", strings.Fields("-quick -joins 5 -duration 2s -backends udp"), func(t *testing.T, o bench.Options) {
			if o.Joins != 5 || o.Duration != 2*time.Second || o.Reps != q.Reps || !slices.Equal(o.Backends, []string{"udp"}) {
				t.Errorf("%+v", o)
			}
		}},
		{"streams and zero scale", strings.Fields("-streams 1,2,8 -scale 0 -joins 0"), func(t *testing.T, o bench.Options) {
			if !slices.Equal(o.Streams, []int{1, 2, 8}) || o.Scale != 0 || o.Joins != 0 {
				t.Errorf("%+v", o)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}

func TestParseFlagsRejects(t *testing.T) {
	for _, args := range [][]string{
		{"-backends", "carrier-pigeon"},
		{"-duration", "1500ms"},
		{"-reps", "0"},
		{"-streams", "1,x"},
		{"-streams", ""},
		{"-joins", "1000"},
		{"extra"},
		{"-nosuchflag"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestRealMainUsage(t *testing.T) {
	var out, errOut strings.Builder
	if code := realMain([]string{"-backends", "nope"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "nope") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := realMain([]string{"-h"}, &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "usage: weft-bench") {
		t.Errorf("-h: exit %d, stderr %q", code, errOut.String())
	}
}
