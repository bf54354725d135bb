package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// DecodeKeys is the one decoder of Backend objects: every backend's Validate uses it. It
// decodes raw into dst, a pointer to the backend's config struct holding the defaults; an
// empty or null raw leaves dst as it is. The keys are dst's exported fields (or their json
// tags), matched case-insensitively as encoding/json, and so flanneld, matches them. Keys
// the backend does not know (Type among them) are ignored, as flanneld ignores them;
// UnknownKeys lists them, for the warnings the config check gives. Errors name the key and
// the value:
//
//	not a JSON object: ...
//	key VNI: value "1" is not an integer
//
// It returns the keys as written, for messages about values that decode but are wrong
// (see RawValue). Backends wrap the error with their name and subnet.ErrInvalidConfig.
func DecodeKeys(raw json.RawMessage, dst any) (map[string]json.RawMessage, error) {
	if t := bytes.Trim(raw, jsonSpace); len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	// encoding/json's own matching decides which field each key sets, and ignores the
	// others.
	if err := json.Unmarshal(raw, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("key %s: value %s is not %s", te.Field, RawValue(m, te.Field), jsonKind(te.Type))
		}
		return nil, err
	}
	return m, nil
}

// jsonSpace is JSON's whitespace (RFC 8259), narrower than bytes.TrimSpace's.
const jsonSpace = " \t\r\n"

// KeyNames returns the keys of a backend's config struct (dst points to it), for
// Type.Keys.
func KeyNames(dst any) []string { return keyNames(dst) }

// UnknownKeys returns the keys of the Backend object raw that are neither Type nor one of
// known (matched case-insensitively), sorted; nil when raw is not an object.
func UnknownKeys(raw json.RawMessage, known []string) []string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	var out []string
	for k := range m {
		if !strings.EqualFold(k, "Type") && !containsFold(known, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// keyNames returns the JSON keys of the struct dst points to, as encoding/json names them
// (the field name, or the json tag's name; "-" and unexported fields are no keys), in
// declaration order. Embedded structs are not flattened: no backend config has one.
func keyNames(dst any) []string {
	t := reflect.TypeOf(dst)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("backend.DecodeKeys: dst is %v, not a pointer to a struct", t))
	}
	t = t.Elem()
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// RawValue returns the JSON text given for key (matched as encoding/json does), or "?".
func RawValue(m map[string]json.RawMessage, key string) string {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return string(v)
		}
	}
	return "?"
}

func containsFold(list []string, s string) bool {
	for _, k := range list {
		if strings.EqualFold(k, s) {
			return true
		}
	}
	return false
}

// jsonKind names a Go field type the way a config author thinks of it.
func jsonKind(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	}
	return t.String()
}
