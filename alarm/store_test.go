package alarm

import (
	"context"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

// The thresholds applied are the newest of the node's own settings and
// those its core sent; the webhooks are always its own.
func TestSettingsFromTheCore(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	load := func() Settings {
		t.Helper()
		s, _, err := LoadSettings(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	send := func(body string) {
		t.Helper()
		if _, err := st.AppendMany(ctx, []store.AppendRequest{{Path: store.UpdatesStream, Topic: SettingsTopic, Partition: 0,
			Messages: []store.Message{{Value: []byte(body)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if s := load(); s.DeviceOfflineAfter != Duration(DefaultDeviceOfflineAfter) {
		t.Fatalf("defaults: %+v", s)
	}
	send(`{"device_offline_after":"7m0s","link_down_after":"2m0s","disk_free_below":10,"cert_expiry_within":"720h0m0s"}`)
	if s := load(); s.DeviceOfflineAfter != Duration(7*time.Minute) {
		t.Fatalf("from the core: %+v", s)
	}
	if _, err := SaveSettings(ctx, st, Settings{DeviceOfflineAfter: Duration(9 * time.Minute), Webhooks: []Webhook{{URL: "http://a/", Secret: "s"}}}); err != nil {
		t.Fatal(err)
	}
	if s := load(); s.DeviceOfflineAfter != Duration(9*time.Minute) || len(s.Webhooks) != 1 {
		t.Fatalf("own, newer: %+v", s)
	}
	send(`{"device_offline_after":"11m0s"}`)
	if s := load(); s.DeviceOfflineAfter != Duration(11*time.Minute) || s.LinkDownAfter != Duration(DefaultLinkDownAfter) || len(s.Webhooks) != 1 {
		t.Fatalf("from the core, newer: %+v", s)
	}
	send(`{"device_offline_after":"bad"}`)
	if s := load(); s.DeviceOfflineAfter != Duration(9*time.Minute) {
		t.Fatalf("an unreadable message is ignored: %+v", s)
	}
}
