package device

import (
	"testing"
	"time"
)

func TestApplyDesired(t *testing.T) {
	tests := []struct {
		delta    string
		interval time.Duration
		setpoint float64
		errs     []string
	}{
		{`{"sample_interval_s": 2}`, 2 * time.Second, 4, nil},
		{`{"setpoint": 7.5}`, 5 * time.Second, 7.5, nil},
		{`{"setpoint": 11}`, 5 * time.Second, 4, []string{"setpoint"}},
		{`{"sample_interval_s": 0, "setpoint": 2}`, 5 * time.Second, 2, []string{"sample_interval_s"}},
		{`{"sample_interval_s": "fast"}`, 5 * time.Second, 4, []string{"sample_interval_s"}},
		{`{"colour": "red"}`, 5 * time.Second, 4, nil},
		{`[1,2]`, 5 * time.Second, 4, []string{"delta"}},
	}
	for _, tc := range tests {
		d := &simDevice{class: Classes[0], interval: 5 * time.Second, setpoint: Classes[0].DefaultSetpoint}
		errs := d.apply([]byte(tc.delta))
		if d.interval != tc.interval || d.setpoint != tc.setpoint || len(errs) != len(tc.errs) {
			t.Errorf("%s: interval %s setpoint %g errs %v", tc.delta, d.interval, d.setpoint, errs)
		}
		for _, k := range tc.errs {
			if errs[k] == "" {
				t.Errorf("%s: no error for %s: %v", tc.delta, k, errs)
			}
		}
	}
}
