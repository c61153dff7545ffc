package shadow

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
)

// Delta returns desired minus reported: every field of desired whose value
// differs from reported's. Objects are compared field by field, so a
// nested delta holds only the nested fields that differ; any other value
// (number, string, bool, array) is in the delta whole when it differs.
// Numbers compare by value (7 equals 7.0). Fields only reported has are
// not in the delta, nor are empty objects. The result is never nil: an
// empty delta means in sync.
//
// Values are as encoding/json decodes them, with or without UseNumber.
func Delta(desired, reported map[string]any) map[string]any {
	out := map[string]any{}
	for k, dv := range desired {
		rv, has := reported[k]
		if dm, ok := dv.(map[string]any); ok {
			rm, _ := rv.(map[string]any)
			if sub := Delta(dm, rm); len(sub) > 0 {
				out[k] = sub
			}
			continue
		}
		if dv == nil {
			// A merge patch never leaves a null in desired; one written
			// by other means asks for nothing.
			continue
		}
		if !has || !Equal(dv, rv) {
			out[k] = dv
		}
	}
	return out
}

// Equal reports whether two decoded JSON values are equal: numbers by
// value whatever their form, objects by their fields, arrays element by
// element.
func Equal(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !Equal(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !Equal(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return numberEqual(a, b)
}

// numberEqual compares two decoded JSON numbers: exactly as integers when
// both are, else as float64 (never as arbitrary precision, whose cost a
// number such as 1e999999999 would make unbounded).
func numberEqual(a, b any) bool {
	if x, ok := integer(a); ok {
		if y, ok := integer(b); ok {
			return x == y
		}
	}
	x, ok := float(a)
	if !ok {
		return false
	}
	y, ok := float(b)
	return ok && x == y
}

func integer(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	case int:
		return int64(n), true
	case int64:
		return n, true
	case float64:
		if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
			return int64(n), true
		}
	}
	return 0, false
}

func float(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(n), 64)
		return f, err == nil || errors.Is(err, strconv.ErrRange)
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}
