package backend

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// keysConfig has the shapes of field the backends' configs use, a json tag, and fields
// that are no keys.
type keysConfig struct {
	VNI      int
	Learning bool
	Mode     string
	Checksum *bool
	Port     int `json:"port"`
	Skipped  int `json:"-"`
	hidden   int
}

func TestDecodeKeys(t *testing.T) {
	defaults := keysConfig{VNI: 1, Mode: "auto"}
	yes := true
	for _, c := range []struct {
		raw     string
		want    keysConfig // when err is ""
		err     string     // a substring of the error
		unknown []string   // what UnknownKeys says of it
	}{
		{raw: ``, want: defaults},
		{raw: `null`, want: defaults},
		{raw: ` null `, want: defaults},
		{raw: `{}`, want: defaults},
		{raw: `{"Type":"vxlan"}`, want: defaults},
		{raw: `{"VNI":2,"Learning":true,"Mode":"kernel","Checksum":true,"port":8472}`,
			want: keysConfig{VNI: 2, Learning: true, Mode: "kernel", Checksum: &yes, Port: 8472}},
		// Keys match fields case-insensitively, as encoding/json (and so flanneld) matches them.
		{raw: `{"vni":3,"LEARNING":true,"mOdE":"userspace","PORT":1}`,
			want: keysConfig{VNI: 3, Learning: true, Mode: "userspace", Port: 1}},
		{raw: `{"Checksum":null}`, want: defaults},
		// Unknown keys are ignored, as flanneld ignores them, and listed as written.
		{raw: `{"VNI":2,"Foo":1}`, want: keysConfig{VNI: 2, Mode: "auto"}, unknown: []string{"Foo"}},
		{raw: `{"vnii":2}`, want: defaults, unknown: []string{"vnii"}},
		{raw: `{"Skipped":1,"hidden":1}`, want: defaults, unknown: []string{"Skipped", "hidden"}},
		{raw: `{"Types":"vxlan"}`, want: defaults, unknown: []string{"Types"}},
		// Type, in any case, is the backend's name (subnet.ParseConfig reads it so).
		{raw: `{"type":"vxlan","vni":3}`, want: keysConfig{VNI: 3, Mode: "auto"}},
		{raw: `{"TYPE":"vxlan"}`, want: defaults},
		// Values of the wrong kind name the key and the value as written.
		{raw: `{"VNI":"1"}`, err: `key VNI: value "1" is not an integer`},
		{raw: `{"vni":1.5}`, err: `key VNI: value 1.5 is not an integer`},
		{raw: `{"Learning":"yes"}`, err: `key Learning: value "yes" is not true or false`},
		{raw: `{"mode":7}`, err: `key Mode: value 7 is not a string`},
		{raw: `{"Checksum":1}`, err: `key Checksum: value 1 is not true or false`},
		// Not an object.
		{raw: `[1]`, err: "not a JSON object"},
		{raw: `"vxlan"`, err: "not a JSON object"},
		{raw: `{"VNI":1`, err: "not a JSON object"},
		{raw: `{"VNI":1} {}`, err: "not a JSON object"},
	} {
		got := defaults
		m, err := DecodeKeys(json.RawMessage(c.raw), &got)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one containing %q", c.raw, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.raw, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: decoded %+v, want %+v", c.raw, got, c.want)
		}
		if u := UnknownKeys(json.RawMessage(c.raw), KeyNames(&keysConfig{})); !slices.Equal(u, c.unknown) {
			t.Errorf("%s: UnknownKeys = %q, want %q", c.raw, u, c.unknown)
		}
		if strings.HasPrefix(c.raw, "{") && len(m) != strings.Count(c.raw, ":") {
			t.Errorf("%s: keys as written %v", c.raw, m)
		}
	}
}

// A backend without keys (host-gw) decodes into an empty struct: every key but Type is
// unknown.
func TestDecodeKeysNoKeys(t *testing.T) {
	var none struct{}
	for _, raw := range []string{``, `{}`, `{"Type":"host-gw"}`, `{"Type":"host-gw","MTU":1400}`} {
		if _, err := DecodeKeys(json.RawMessage(raw), &none); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
	if u := UnknownKeys(json.RawMessage(`{"Type":"host-gw","MTU":1400}`), KeyNames(&none)); !slices.Equal(u, []string{"MTU"}) {
		t.Errorf("MTU for a backend without keys: UnknownKeys = %q", u)
	}
}

func TestDecodeKeysRawValue(t *testing.T) {
	var cfg keysConfig
	m, err := DecodeKeys(json.RawMessage(`{"mode":"", "VNI": 4}`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if v := RawValue(m, "Mode"); v != `""` {
		t.Errorf(`RawValue(Mode) = %s, want ""`, v)
	}
	if v := RawValue(m, "Port"); v != "?" {
		t.Errorf("RawValue(Port) = %s, want ?", v)
	}
}

// FuzzDecodeKeys checks DecodeKeys against encoding/json itself: with unknown fields
// disallowed and a field for Type, a decoder accepts exactly the objects DecodeKeys
// accepts, and fills the fields the same way. So DecodeKeys's case rule is encoding/json's
// (and flanneld's), but for Type, which DecodeKeys takes only as "Type".
func FuzzDecodeKeys(f *testing.F) {
	for _, s := range []string{`{"Type":"vxlan","VNI":2}`, `{"vni":3,"PORT":1,"type":"x"}`, `{"Foo":1}`,
		`{"VNI":"1"}`, `{"Skipped":1,"hidden":2}`, `null`, `[1]`, `{"mode":"kernel","Mode":"auto"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(bytes.TrimSpace(raw)) == 0 {
			return
		}
		defaults := keysConfig{VNI: 1, Mode: "auto"}
		got := defaults
		_, err := DecodeKeys(raw, &got)
		if !json.Valid(raw) {
			if err == nil {
				t.Fatalf("%q: invalid JSON accepted", raw)
			}
			return
		}
		// The decoding is encoding/json's, as flanneld's: unknown keys ignored.
		want := defaults
		wantErr := json.Unmarshal(raw, &want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: DecodeKeys: %v; encoding/json: %v", raw, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: DecodeKeys: %+v; encoding/json: %+v", raw, got, want)
		}
		// UnknownKeys lists exactly the keys encoding/json (with a Type field) would refuse.
		var keys map[string]json.RawMessage
		if json.Unmarshal(raw, &keys) != nil {
			return
		}
		unknown := UnknownKeys(raw, KeyNames(&keysConfig{}))
		for k := range keys {
			// encoding/json, told to refuse unknown fields, on an object of that key alone
			// (with null, which any field takes).
			var one struct {
				keysConfig
				Type json.RawMessage
			}
			quoted, _ := json.Marshal(k)
			dec := json.NewDecoder(strings.NewReader(`{` + string(quoted) + `:null}`))
			dec.DisallowUnknownFields()
			err := dec.Decode(&one)
			refused := err != nil && strings.Contains(err.Error(), "unknown field")
			if slices.Contains(unknown, k) != refused {
				t.Fatalf("%q: UnknownKeys = %q, but encoding/json on key %q: %v", raw, unknown, k, err)
			}
		}
	})
}
