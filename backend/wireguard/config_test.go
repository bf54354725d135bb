package wireguard

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/weftnet/weft/subnet"
)

const testPSK = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="

func TestParseConfig(t *testing.T) {
	def := Config{ListenPort: 51820, ListenPortV6: 51821, Mode: ModeSeparate, Implementation: ImplAuto}
	with := func(f func(*Config)) Config { c := def; f(&c); return c }
	for _, tc := range []struct {
		raw  string
		want Config
	}{
		{``, def},
		{`null`, def},
		{`{"Type":"wireguard"}`, def},
		{`{"Type":"wireguard","ListenPort":5000,"ListenPortV6":5001}`, with(func(c *Config) { c.ListenPort, c.ListenPortV6 = 5000, 5001 })},
		{`{"Type":"wireguard","PSK":"` + testPSK + `"}`, with(func(c *Config) { c.PSK = testPSK })},
		{`{"Type":"wireguard","PSK":null}`, def},
		{`{"Type":"wireguard","PersistentKeepaliveInterval":25}`, with(func(c *Config) { c.PersistentKeepaliveInterval = 25 })},
		{`{"Type":"wireguard","Mode":"auto"}`, with(func(c *Config) { c.Mode = ModeAuto })},
		{`{"Type":"wireguard","Mode":"ipv4"}`, with(func(c *Config) { c.Mode = ModeIPv4 })},
		{`{"Type":"wireguard","Mode":"ipv6"}`, with(func(c *Config) { c.Mode = ModeIPv6 })},
		{`{"Type":"wireguard","Implementation":"userspace"}`, with(func(c *Config) { c.Implementation = ImplUserspace })},
		{`{"Type":"wireguard","implementation":"kernel","mtu":1400}`, with(func(c *Config) { c.Implementation, c.MTU = ImplKernel, 1400 })},
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
		{`{"Type":"wireguard","ListenPort":0}`, []string{"key ListenPort", "value 0", "1..65535"}},
		{`{"Type":"wireguard","ListenPort":65536}`, []string{"key ListenPort", "value 65536"}},
		{`{"Type":"wireguard","ListenPort":"51820"}`, []string{"key ListenPort", `"51820"`, "an integer"}},
		{`{"Type":"wireguard","ListenPortV6":-1}`, []string{"key ListenPortV6", "value -1"}},
		{`{"Type":"wireguard","PSK":"not-a-key"}`, []string{"key PSK", "not a WireGuard key", "wg genpsk"}},
		{`{"Type":"wireguard","PSK":12345}`, []string{"key PSK", "not a string"}},
		{`{"Type":"wireguard","PersistentKeepaliveInterval":-1}`, []string{"key PersistentKeepaliveInterval", "value -1", "0..65535"}},
		{`{"Type":"wireguard","PersistentKeepaliveInterval":"25s"}`, []string{"key PersistentKeepaliveInterval", `"25s"`, "an integer"}},
		{`{"Type":"wireguard","Mode":"kernel"}`, []string{"key Mode", `"kernel"`, `"separate"`, "Implementation"}},
		{`{"Type":"wireguard","Mode":""}`, []string{"key Mode", `""`}},
		{`{"Type":"wireguard","Implementation":"fast"}`, []string{"key Implementation", `"fast"`, `"auto"`, `"kernel"`, `"userspace"`}},
		{`{"Type":"wireguard","MTU":67}`, []string{"key MTU", "value 67", "68..65455"}},
		{`[1]`, []string{"not a JSON object"}},
	} {
		_, err := ParseConfig(json.RawMessage(tc.raw))
		if err == nil {
			t.Errorf("ParseConfig(%s) accepted", tc.raw)
			continue
		}
		if !errors.Is(err, subnet.ErrInvalidConfig) {
			t.Errorf("ParseConfig(%s): %v does not wrap ErrInvalidConfig", tc.raw, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseConfig(%s): %q lacks %q", tc.raw, err, w)
			}
		}
	}
}

// A PSK is a secret: no error may quote it, whatever shape it has.
func TestParseConfigNeverQuotesThePSK(t *testing.T) {
	for _, raw := range []string{
		`{"PSK":"s3cr3t-but-not-base64!"}`,
		`{"PSK":["s3cr3t-but-not-base64!"]}`,
		`{"PSK":{"v":"s3cr3t-but-not-base64!"}}`,
	} {
		_, err := ParseConfig(json.RawMessage(raw))
		if err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("ParseConfig(%s) = %v", raw, err)
		}
	}
}

func TestPodMTU(t *testing.T) {
	for _, tc := range []struct {
		mtu, ext, want int
		err            string
	}{
		{0, 1500, 1420, ""},
		{0, 9000, 8920, ""},
		{1400, 1500, 1400, ""},
		{1420, 1500, 1420, ""},
		{1421, 1500, 0, "larger than the external interface's MTU 1500"},
		{0, 140, 0, "below the minimum"},
	} {
		got, err := podMTU(Config{MTU: tc.mtu}, tc.ext)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("podMTU(MTU %d, ext %d) = %d, %v; want %d, %q", tc.mtu, tc.ext, got, err, tc.want, tc.err)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(`{"Type":"wireguard","ListenPort":51820,"PSK":"` + testPSK + `","Mode":"auto","MTU":1400}`)
	f.Add(`{"PersistentKeepaliveInterval":25,"Implementation":"userspace"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		cfg, err := ParseConfig(json.RawMessage(raw))
		if err != nil {
			if !errors.Is(err, subnet.ErrInvalidConfig) {
				t.Fatalf("%v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		if cfg.ListenPort < 1 || cfg.ListenPort > 65535 || (cfg.MTU != 0 && cfg.MTU < minMTU) {
			t.Fatalf("accepted %+v", cfg)
		}
	})
}
