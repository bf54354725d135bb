package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
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
		unknown string     // the key of the *UnknownKeyError, if any
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
		// Unknown keys are refused and named as written.
		{raw: `{"VNI":2,"Foo":1}`, err: `unknown key "Foo" (known: Type, VNI, Learning, Mode, Checksum, port)`, unknown: "Foo"},
		{raw: `{"vnii":2}`, err: `unknown key "vnii"`, unknown: "vnii"},
		{raw: `{"Skipped":1}`, err: `unknown key "Skipped"`, unknown: "Skipped"},
		{raw: `{"hidden":1}`, err: `unknown key "hidden"`, unknown: "hidden"},
		{raw: `{"Types":"vxlan"}`, err: `unknown key "Types"`, unknown: "Types"},
		// subnet.ParseConfig reads the backend's name from "Type" only.
		{raw: `{"type":"vxlan","vni":3}`, err: `unknown key "type"`, unknown: "type"},
		{raw: `{"TYPE":"vxlan"}`, err: `unknown key "TYPE"`, unknown: "TYPE"},
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
			var uk *UnknownKeyError
			if isUnknown := errors.As(err, &uk); isUnknown != (c.unknown != "") || isUnknown && uk.Key != c.unknown {
				t.Errorf("%s: error %#v, want an *UnknownKeyError for %q: %v", c.raw, err, c.unknown, isUnknown)
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
		if strings.HasPrefix(c.raw, "{") && len(m) != strings.Count(c.raw, ":") {
			t.Errorf("%s: keys as written %v", c.raw, m)
		}
	}
}

// A backend without keys (host-gw) decodes into an empty struct: only Type is allowed.
func TestDecodeKeysNoKeys(t *testing.T) {
	var none struct{}
	for _, raw := range []string{``, `{}`, `{"Type":"host-gw"}`} {
		if _, err := DecodeKeys(json.RawMessage(raw), &none); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
	_, err := DecodeKeys(json.RawMessage(`{"Type":"host-gw","MTU":1400}`), &none)
	if err == nil || err.Error() != `unknown key "MTU" (known: Type)` {
		t.Errorf("MTU for a backend without keys: %v", err)
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
		var keys map[string]json.RawMessage
		if json.Unmarshal(raw, &keys) == nil {
			for k := range keys {
				if k != "Type" && strings.EqualFold(k, "Type") {
					if err == nil {
						t.Fatalf("%q: key %q accepted", raw, k)
					}
					return
				}
			}
		}
		var want struct {
			keysConfig
			Type json.RawMessage
		}
		want.keysConfig = defaults
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		wantErr := dec.Decode(&want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: DecodeKeys: %v; encoding/json: %v", raw, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want.keysConfig) {
			t.Fatalf("%q: DecodeKeys: %+v; encoding/json: %+v", raw, got, want.keysConfig)
		}
	})
}
