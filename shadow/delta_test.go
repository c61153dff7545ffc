package shadow

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/weft-io/weft/store"
)

// deltaTests feed TestDelta, FuzzDelta's seeds and BenchmarkDelta.
var deltaTests = []struct {
	name              string
	desired, reported string
	want              string
}{
	{"both empty", `{}`, `{}`, `{}`},
	{"in sync", `{"setpoint":7}`, `{"setpoint":7,"firmware":"1.0"}`, `{}`},
	{"number forms are equal", `{"setpoint":7,"gain":0.5}`, `{"setpoint":7.0,"gain":5e-1}`, `{}`},
	{"differs", `{"setpoint":7}`, `{"setpoint":4}`, `{"setpoint":7}`},
	{"missing from reported", `{"sample_interval_s":10}`, `{}`, `{"sample_interval_s":10}`},
	{"reported only is ignored", `{}`, `{"setpoint":4}`, `{}`},
	{"type differs", `{"mode":"1"}`, `{"mode":1}`, `{"mode":"1"}`},
	{"bools", `{"on":true,"eco":false}`, `{"on":true,"eco":true}`, `{"eco":false}`},
	{"nested partly differs", `{"cfg":{"a":1,"b":{"c":2,"d":3}}}`, `{"cfg":{"a":1,"b":{"c":2,"d":4}}}`, `{"cfg":{"b":{"d":3}}}`},
	{"nested in sync", `{"cfg":{"a":1}}`, `{"cfg":{"a":1,"z":0}}`, `{}`},
	{"nested over a scalar", `{"cfg":{"a":1}}`, `{"cfg":5}`, `{"cfg":{"a":1}}`},
	{"nested missing", `{"cfg":{"a":{"b":1}}}`, `{}`, `{"cfg":{"a":{"b":1}}}`},
	{"empty object asks nothing", `{"cfg":{}}`, `{}`, `{}`},
	{"arrays whole", `{"list":[1,2,3]}`, `{"list":[1,2]}`, `{"list":[1,2,3]}`},
	{"arrays equal", `{"list":[1,{"a":"x"}]}`, `{"list":[1.0,{"a":"x"}]}`, `{}`},
	{"scalar over an object", `{"cfg":3}`, `{"cfg":{"a":1}}`, `{"cfg":3}`},
	{"null in desired asks nothing", `{"gone":null}`, `{"gone":1}`, `{}`},
	{"big integers exactly", `{"n":9007199254740993}`, `{"n":9007199254740992}`, `{"n":9007199254740993}`},
}

func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	m, err := decodeObject([]byte(s))
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return m
}

func TestDelta(t *testing.T) {
	for _, tt := range deltaTests {
		t.Run(tt.name, func(t *testing.T) {
			got := Delta(decode(t, tt.desired), decode(t, tt.reported))
			if want := decode(t, tt.want); !Equal(got, want) {
				b, _ := json.Marshal(got)
				t.Fatalf("Delta(%s, %s) = %s, want %s", tt.desired, tt.reported, b, tt.want)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{`1`, `1.0`, true},
		{`1`, `1.5`, false},
		{`100`, `1e2`, true},
		{`"a"`, `"a"`, true},
		{`"1"`, `1`, false},
		{`null`, `null`, true},
		{`null`, `0`, false},
		{`[1,2]`, `[1,2]`, true},
		{`[1,2]`, `[2,1]`, false},
		{`{"a":1}`, `{"a":1,"b":2}`, false},
		{`{"a":[true]}`, `{"a":[true]}`, true},
		{`1e999999999`, `1e999999998`, true}, // both overflow: compared as float64, never exactly
	} {
		a, b := decodeAny(t, tt.a), decodeAny(t, tt.b)
		if got := Equal(a, b); got != tt.want {
			t.Errorf("Equal(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Equal(b, a); got != tt.want {
			t.Errorf("Equal(%s, %s) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

func decodeAny(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// FuzzDelta checks, for any pair of documents, that reporting the delta
// brings a device in sync: once reported is patched with
// Delta(desired, reported), the delta is empty.
func FuzzDelta(f *testing.F) {
	for _, tt := range deltaTests {
		f.Add([]byte(tt.desired), []byte(tt.reported))
	}
	f.Fuzz(func(t *testing.T, desired, reported []byte) {
		d, err := decodeObject(desired)
		if err != nil {
			return
		}
		r, err := decodeObject(reported)
		if err != nil {
			return
		}
		delta := Delta(d, r)
		b, err := json.Marshal(delta)
		if err != nil {
			t.Fatalf("delta does not marshal: %v", err)
		}
		patched := store.MergePatch(r, decode(t, string(b))).(map[string]any)
		if left := Delta(d, patched); len(left) != 0 {
			lb, _ := json.Marshal(left)
			t.Fatalf("after reporting the delta %s, delta %s is left", b, lb)
		}
	})
}

func BenchmarkDelta(b *testing.B) {
	b.ReportAllocs()
	for _, tt := range deltaTests {
		d, r := decode(b, tt.desired), decode(b, tt.reported)
		b.Run(tt.name, func(b *testing.B) {
			for b.Loop() {
				Delta(d, r)
			}
		})
	}
}
