package gre

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/weftnet/weft/subnet"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want Config
	}{
		{``, Config{Mode: ModeAuto}},
		{`null`, Config{Mode: ModeAuto}},
		{`{"Type":"gre"}`, Config{Mode: ModeAuto}},
		{`{"Type":"gre","Mode":"auto"}`, Config{Mode: ModeAuto}},
		{`{"Type":"gre","Mode":"kernel"}`, Config{Mode: ModeKernel}},
		{`{"Type":"gre","Mode":"userspace","MTU":1400}`, Config{Mode: ModeUserspace, MTU: 1400}},
		{`{"Type":"gre","mtu":68}`, Config{Mode: ModeAuto, MTU: 68}},
		{`{"Type":"gre","MTU":0}`, Config{Mode: ModeAuto}},
		{`{"Type":"gre","MTU":65511}`, Config{Mode: ModeAuto, MTU: 65511}},
	} {
		got, err := ParseConfig(json.RawMessage(tc.raw))
		if err != nil || got != tc.want {
			t.Errorf("ParseConfig(%s) = %+v, %v; want %+v", tc.raw, got, err, tc.want)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want []string // substrings of the error
	}{
		{`{"Type":"gre","Mode":"fast"}`, []string{"key Mode", `"fast"`, `"auto"`, `"kernel"`, `"userspace"`}},
		{`{"Type":"gre","Mode":"Kernel"}`, []string{"key Mode", `"Kernel"`}},
		{`{"Type":"gre","Mode":""}`, []string{"key Mode", "empty"}},
		{`{"Type":"gre","Mode":1}`, []string{"key Mode", "value 1", "a string"}},
		{`{"Type":"gre","MTU":"1400"}`, []string{"key MTU", `"1400"`, "an integer"}},
		{`{"Type":"gre","MTU":1.5}`, []string{"key MTU", "1.5"}},
		{`{"Type":"gre","MTU":67}`, []string{"key MTU", "value 67", "68..65511"}},
		{`{"Type":"gre","MTU":-1}`, []string{"key MTU", "value -1"}},
		{`{"Type":"gre","MTU":65512}`, []string{"key MTU", "value 65512"}},
		{`[1]`, []string{"not a JSON object"}},
		{`"gre"`, []string{"not a JSON object"}},
	} {
		_, err := ParseConfig(json.RawMessage(tc.raw))
		if err == nil {
			t.Errorf("ParseConfig(%s) accepted", tc.raw)
			continue
		}
		if !errors.Is(err, subnet.ErrInvalidConfig) {
			t.Errorf("ParseConfig(%s): %v does not wrap ErrInvalidConfig", tc.raw, err)
		}
		for _, s := range append(tc.want, "gre backend") {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("ParseConfig(%s): error %q does not mention %q", tc.raw, err, s)
			}
		}
		if Validate(json.RawMessage(tc.raw)) == nil {
			t.Errorf("Validate(%s) accepted what ParseConfig rejects", tc.raw)
		}
	}
}

func TestPodMTU(t *testing.T) {
	for _, tc := range []struct {
		cfg    Config
		ext    int
		want   int
		errSub string
	}{
		{Config{}, 1500, 1476, ""},
		{Config{}, 9000, 8976, ""},
		{Config{MTU: 1400}, 1500, 1400, ""},
		{Config{MTU: 1476}, 1500, 1476, ""},
		{Config{MTU: 1477}, 1500, 0, "larger than the external interface's MTU 1500"},
		{Config{}, 91, 0, "below the minimum 68"},
		{Config{}, 92, 68, ""},
	} {
		got, err := podMTU(tc.cfg, tc.ext, overhead)
		if got != tc.want || (err == nil) != (tc.errSub == "") || (err != nil && !strings.Contains(err.Error(), tc.errSub)) {
			t.Errorf("podMTU(%+v, %d) = %d, %v; want %d, %q", tc.cfg, tc.ext, got, err, tc.want, tc.errSub)
		}
	}
	if _, err := podMTU(Config{MTU: 1477}, 1500, overhead); !errors.Is(err, subnet.ErrInvalidConfig) {
		t.Errorf("an MTU key too large for the interface is a config error: %v", err)
	}
}
