package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// UnknownKeyError is returned by DecodeKeys for a key the backend does not know.
type UnknownKeyError struct {
	Key   string   // as written in the config
	Known []string // the backend's keys, without Type
}

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("unknown key %q (known: %s)", e.Key, strings.Join(append([]string{"Type"}, e.Known...), ", "))
}

// DecodeKeys is the one decoder of Backend objects: every backend's Validate uses it. It
// decodes raw into dst, a pointer to the backend's config struct holding the defaults; an
// empty or null raw leaves dst as it is. The keys are dst's exported fields (or their json
// tags), matched case-insensitively as encoding/json, and so flanneld, matches them. Type
// is always allowed, spelled exactly so: that is the only spelling subnet.ParseConfig
// reads the backend's name from, so another ("type") would be ignored there and is
// refused here. Unlike flanneld, which ignores keys it does not know, DecodeKeys refuses
// them. Errors name the key and the value:
//
//	not a JSON object: ...
//	unknown key "Foo" (known: Type, VNI, Port)      (an *UnknownKeyError)
//	key VNI: value "1" is not an integer
//
// It returns the keys as written, for messages about values that decode but are wrong
// (see RawValue). Backends wrap the error with their name and subnet.ErrInvalidConfig.
func DecodeKeys(raw json.RawMessage, dst any) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	known := keyNames(dst)
	for k := range m {
		if k != "Type" && !containsFold(known, k) {
			return nil, &UnknownKeyError{Key: k, Known: known}
		}
	}
	// Every key is known, so encoding/json's own matching decides which field each sets
	// (and ignores Type, unless dst has such a field).
	if err := json.Unmarshal(raw, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("key %s: value %s is not %s", te.Field, RawValue(m, te.Field), jsonKind(te.Type))
		}
		return nil, err
	}
	return m, nil
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
