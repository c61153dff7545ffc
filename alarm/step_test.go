package alarm

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestStep(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	disk := Condition{Key: "disk_low/data", Type: DiskLow, Severity: Major}
	dev := Condition{Key: "device_offline/pump-7", Type: DeviceOffline, Severity: Major, Device: "pump-7", Edge: "edge-1"}
	openDisk := Record{Alarm: Alarm{ID: "d1", Type: DiskLow, Severity: Major, State: Active}, Key: disk.Key, Node: "n"}
	ackedDev := Record{Alarm: Alarm{ID: "o1", Type: DeviceOffline, Severity: Major, State: Acknowledged, Device: "pump-7"}, Key: dev.Key, Node: "n"}
	tests := []struct {
		name    string
		open    []Record
		checked []string
		held    []Condition
		want    string // "event:key:state:severity" of each record, in order
	}{
		{"nothing", nil, []string{DiskLow}, nil, ""},
		{"raise", nil, []string{DiskLow, DeviceOffline}, []Condition{disk, dev},
			"raised:disk_low/data:active:major raised:device_offline/pump-7:active:major"},
		{"held again: nothing", []Record{openDisk}, []string{DiskLow}, []Condition{disk}, ""},
		{"held twice: one alarm", nil, []string{DiskLow}, []Condition{disk, disk}, "raised:disk_low/data:active:major"},
		{"worse", []Record{openDisk}, []string{DiskLow}, []Condition{{Key: disk.Key, Type: DiskLow, Severity: Critical}},
			"updated:disk_low/data:active:critical"},
		{"ends: cleared", []Record{openDisk, ackedDev}, []string{DiskLow, DeviceOffline}, nil,
			"cleared:disk_low/data:cleared:major cleared:device_offline/pump-7:cleared:major"},
		{"not checked: kept", []Record{openDisk, ackedDev}, []string{DiskLow}, nil, "cleared:disk_low/data:cleared:major"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range Step("n", tt.open, tt.checked, tt.held, t0) {
				got = append(got, r.Event+":"+r.Key+":"+r.State+":"+r.Severity)
				if r.Node != "n" || r.At != t0 {
					t.Errorf("record %+v: want node n, at t0", r)
				}
				if r.Event == EventRaised && (r.ID != NewID("n", r.Key, t0) || !r.Raised.Equal(t0) || string(r.Details) != "{}") {
					t.Errorf("raised %+v: id or time", r)
				}
				if r.Event == EventCleared && (r.Cleared == nil || !r.Cleared.Equal(t0)) {
					t.Errorf("cleared %+v: no time", r)
				}
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Fatalf("got %q\nwant %q", s, tt.want)
			}
		})
	}
}

func TestAcknowledgeAndMerge(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := Record{Alarm: Alarm{ID: "x", State: Active}, Key: "k"}
	acked, changed := Acknowledge(a, "bob", t0)
	if !changed || acked.State != Acknowledged || !acked.Acknowledged.Equal(t0) || acked.By != "bob" || acked.Event != EventAcknowledged {
		t.Fatalf("acknowledged: %+v", acked)
	}
	if _, changed := Acknowledge(acked, "eve", t0.Add(time.Minute)); changed {
		t.Fatal("acknowledged twice")
	}
	cleared := Clear(a, "", t0)
	if c, _ := Acknowledge(cleared, "bob", t0); c.State != Cleared || c.Acknowledged == nil {
		t.Fatalf("acknowledging a cleared alarm: %+v", c)
	}
	// An edge's clear arriving at a core that acknowledged the alarm keeps
	// the acknowledgement; an edge's update does not undo it.
	if m := Merge(acked, true, cleared); m.State != Cleared || m.Acknowledged == nil {
		t.Fatalf("merge clear: %+v", m)
	}
	if m := Merge(acked, true, a); m.State != Acknowledged || m.Acknowledged == nil {
		t.Fatalf("merge update: %+v", m)
	}
	if m := Merge(cleared, true, a); m.State != Cleared {
		t.Fatalf("merge reopened: %+v", m)
	}
}

func TestSignature(t *testing.T) {
	// echo -n '{"id":"x"}' | openssl dgst -sha256 -hmac secret
	const want = "sha256=ebf5302b9c8bc5e255e0d2135c1a75138c004e631d57c70e6081aa366c1de3b9"
	got := Sign("secret", []byte(`{"id":"x"}`))
	if got != want || !Verify("secret", []byte(`{"id":"x"}`), got) ||
		Verify("other", []byte(`{"id":"x"}`), got) || Verify("secret", []byte(`{"id":"y"}`), got) {
		t.Fatalf("signature %s", got)
	}
}

var settingsSeeds = []string{
	`{}`,
	`{"device_offline_after":"5m","link_down_after":"2m","disk_free_below":10,"cert_expiry_within":"720h","webhooks":[{"url":"https://hooks.example.com/a","secret":"s"}]}`,
	`{"device_offline_after":300000000000}`,
	`{"disk_free_below":-1}`,
	`{"webhooks":[{"url":"http://a/","secret":"********"}]}`,
	`{"link_down_after":"x"}`,
}

func FuzzSettings(f *testing.F) {
	for _, s := range settingsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Settings
		if json.Unmarshal(b, &s) != nil {
			return
		}
		c, err := s.Check()
		if err != nil {
			return
		}
		// What Check accepts is whole, and reads back the same.
		if c.DeviceOfflineAfter <= 0 || c.LinkDownAfter <= 0 || c.CertExpiryWithin <= 0 || c.Webhooks == nil {
			t.Fatalf("checked settings %+v", c)
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back Settings
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		if again, err := back.Check(); err != nil || again.DeviceOfflineAfter != c.DeviceOfflineAfter || len(again.Webhooks) != len(c.Webhooks) {
			t.Fatalf("settings %s read back as %+v: %v", out, again, err)
		}
	})
}
