package backend

import (
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
	return fmt.Sprintf("unknown key %q (known: Type, %s)", e.Key, strings.Join(e.Known, ", "))
}

// DecodeKeys decodes a Backend object into dst, which holds the defaults; an empty or null
// raw leaves dst as it is. Keys are matched case-insensitively, as encoding/json (and so
// flanneld) does, and Type is always allowed. Errors name the key and the value:
//
//	not a JSON object: ...
//	unknown key "Foo" (known: Type, VNI, Port)      (an *UnknownKeyError)
//	key VNI: value "1" is not an integer
//
// It returns the keys as written, for messages about values that decode but are wrong
// (see RawValue). Backends wrap the error with their name and subnet.ErrInvalidConfig.
func DecodeKeys(raw json.RawMessage, dst any, known []string) (map[string]json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	for k := range m {
		if k != "Type" && !containsFold(known, k) {
			return nil, &UnknownKeyError{Key: k, Known: known}
		}
	}
	if err := StrictDecode(raw, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("key %s: value %s is not %s", te.Field, RawValue(m, te.Field), jsonKind(te.Type))
		}
		return nil, err
	}
	return m, nil
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
