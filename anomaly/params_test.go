package anomaly

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
)

func TestConfigJSON(t *testing.T) {
	c := Config{Epoch: 60, Threshold: 0.9, SurpriseMargin: 0.3}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"epoch":60,"threshold":0.9,"surprise_margin":0.3}` {
		t.Fatalf("JSON %s", b)
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil || back != c {
		t.Fatalf("round trip %+v, %v", back, err)
	}
	if d := (Config{}).WithDefaults(); d.Epoch != 288 || d.Threshold != 0.8 {
		t.Fatalf("defaults %+v", d)
	}
}

// A vector started from another's parameters goes on as the other does.
func TestVectorFromParams(t *testing.T) {
	cfg := Config{Epoch: 50}
	a := NewVector(cfg, 2)
	t0 := time.Unix(0, 0)
	for i := range 400 {
		x := float64(i % 7)
		a.Observe(t0.Add(time.Duration(i)*time.Minute), []float64{x, 2*x + math.Sin(float64(i))})
	}
	p := a.Params()
	if err := p.Check(2); err != nil {
		t.Fatal(err)
	}
	b, err := NewVectorFrom(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.Params(), p) {
		t.Fatalf("params %+v, want %+v", b.Params(), p)
	}
	bad := p
	bad.Mean = []float64{math.NaN(), 0}
	if _, err := NewVectorFrom(cfg, bad); err == nil {
		t.Fatal("NaN mean accepted")
	}
	bad = p
	bad.Centres = [][]float64{{1}}
	bad.Counts = []float64{1}
	if _, err := NewVectorFrom(cfg, bad); err == nil {
		t.Fatal("a centre of one channel accepted for two")
	}
}
