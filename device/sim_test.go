package device

import (
	"strings"
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

func TestAnswerCommand(t *testing.T) {
	at := time.Date(2026, 3, 1, 11, 0, 2, 500_000_000, time.UTC)
	tests := []struct {
		topic  string
		ok     bool
		body   string
		reboot bool
	}{
		{"updates/device/pump-7/commands/ping/R1", true, `{"at":"2026-03-01T11:00:02.5Z","pong":true}`, false},
		{"updates/device/pump-7/commands/reboot/R2", true, `{"rebooting":true}`, true},
		{"updates/device/pump-7/commands/dance/R3", true, `{"error":"unknown command dance"}`, false},
		{"updates/device/pump-7/commands/ping", false, "", false},
		{"updates/device/pump-7/commands/ping/", false, "", false},
		{"updates/device/pump-7/commands//R1", false, "", false},
		{"updates/device/pump-7/commands/ping/R1/x", false, "", false},
		{"updates/device/pump-8/commands/ping/R1", false, "", false},
		{"updates/device/pump-7/shadow/delta", false, "", false},
		{"updates/all/commands/ping/R1", false, "", false},
	}
	for _, tc := range tests {
		a, ok := answerCommand("pump-7", tc.topic, at)
		if ok != tc.ok || string(a.body) != tc.body || a.reboot != tc.reboot {
			t.Errorf("%s: %v %s reboot %v", tc.topic, ok, a.body, a.reboot)
		}
		if ok && a.topic != "devices/pump-7/commands/"+tc.topic[strings.LastIndexByte(tc.topic, '/')+1:]+"/response" {
			t.Errorf("%s: answered on %s", tc.topic, a.topic)
		}
	}
}
