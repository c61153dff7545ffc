package alarm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

// TestEngineClockAndMissingCerts raises clock when the system clock steps
// back behind the store's floor (and when it jumps forward unconfirmed),
// and cert_missing when a certificate file of the node goes; each clears
// when its condition ends.
func TestEngineClockAndMissingCerts(t *testing.T) {
	var mu sync.Mutex
	wall, mono := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), time.Duration(0)
	pass := func(d time.Duration, wallToo bool) {
		mu.Lock()
		defer mu.Unlock()
		mono += d
		if wallToo {
			wall = wall.Add(d)
		}
	}
	step := func(d time.Duration) { mu.Lock(); wall = wall.Add(d); mu.Unlock() }
	certFile := filepath.Join(t.TempDir(), "edge1.crt")
	if err := os.WriteFile(certFile, []byte("not read as a certificate, only looked for"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, e := edgeEngine(t, store.Config{
		Now:       func() time.Time { mu.Lock(); defer mu.Unlock(); return wall },
		Monotonic: func() time.Duration { mu.Lock(); defer mu.Unlock(); return mono }}, certFile)
	open := func() string {
		t.Helper()
		st.Now() // the store reads its clock as a node does all the time
		var out []string
		for _, a := range checkAndList(t, e, st, Filter{}) {
			if a.Type == Clock || a.Type == CertMissing {
				out = append(out, a.Type+":"+a.Severity+":"+a.State)
			}
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	if got := open(); got != "" {
		t.Fatalf("alarms with a good clock and certificates: %s", got)
	}
	step(-10 * time.Minute)
	pass(time.Second, true)
	if got, want := open(), "clock:major:active"; got != want {
		t.Fatalf("clock 10 min behind: got %q, want %q", got, want)
	}
	step(10 * time.Minute) // back where it was: caught up
	pass(time.Second, true)
	if got, want := open(), "clock:major:cleared"; got != want {
		t.Fatalf("clock caught up: got %q, want %q", got, want)
	}
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if got, want := open(), "cert_missing:critical:active clock:major:cleared"; got != want {
		t.Fatalf("certificate removed: got %q, want %q", got, want)
	}
	if err := os.WriteFile(certFile, []byte("back"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := open(), "cert_missing:critical:cleared clock:major:cleared"; got != want {
		t.Fatalf("certificate restored: got %q, want %q", got, want)
	}
}

// TestEngineStoreDamaged raises store_damaged for a stream that gave up a
// range as damaged.
func TestEngineStoreDamaged(t *testing.T) {
	ctx := context.Background()
	st, e := edgeEngine(t, store.Config{})
	damaged := func() []Alarm { t.Helper(); return checkAndList(t, e, st, Filter{Type: StoreDamaged}) }
	// A replica of an edge's uplink: three records, then the gap the edge
	// quarantined, as the link brings it.
	msgs := make([]store.Message, 3)
	for i := range msgs {
		msgs[i] = store.Message{Offset: uint64(i), Value: []byte(`{}`), Timestamp: time.Now()}
	}
	apply := func(b store.ReplicaBatch) {
		t.Helper()
		b.Path, b.Topic = store.UplinkStream, "edge-9"
		if _, err := st.ApplyReplica(ctx, []store.ReplicaBatch{b}); err != nil {
			t.Fatal(err)
		}
	}
	apply(store.ReplicaBatch{Messages: msgs})
	if l := damaged(); len(l) != 0 {
		t.Fatalf("alarms before any damage: %+v", l)
	}
	apply(store.ReplicaBatch{Gap: &store.Gap{From: 3, To: 5}, Reason: "quarantined at the source"})
	l := damaged()
	if len(l) != 1 || l[0].State != Active || !strings.Contains(string(l[0].Details), store.UplinkStream) {
		t.Fatalf("after a quarantine: %+v", l)
	}
}

// TestEngineDeviceCertExpiring raises cert_expiring at an edge for a
// device whose certificate, as it last connected (cert_expires in its
// shadow, written by the gateway), expires within CertExpiryWithin, and
// clears it once the device connects with a new one.
func TestEngineDeviceCertExpiring(t *testing.T) {
	ctx := context.Background()
	st, e := edgeEngine(t, store.Config{})
	now := st.Now().UTC()
	connect := func(expires time.Time) {
		t.Helper()
		doc := fmt.Sprintf(`{"edge":"edge1","class":"pump","connected":true,"last_seen":%q,"cert_expires":%q}`,
			now.Format(time.RFC3339Nano), expires.UTC().Format(time.RFC3339Nano))
		if _, err := st.Table(store.ShadowsTable).Patch(ctx, "pump-1", []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	expiring := func() []Alarm { t.Helper(); return checkAndList(t, e, st, Filter{Type: CertExpiring}) }
	connect(now.Add(3 * 24 * time.Hour))
	l := expiring()
	if len(l) != 1 || l[0].Device != "pump-1" || l[0].Severity != Major || l[0].State != Active {
		t.Fatalf("a device certificate expiring in 3 days: %+v", l)
	}
	connect(now.Add(365 * 24 * time.Hour))
	if l := expiring(); len(l) != 1 || l[0].State != Cleared {
		t.Fatalf("after connecting with a new certificate: %+v", l)
	}
}

// edgeEngine opens an edge's store (sc's clock, if any) and its alarm
// engine with the certificate files certFiles.
func edgeEngine(t *testing.T, sc store.Config, certFiles ...string) (*store.Store, *Engine) {
	t.Helper()
	sc.Dir, sc.Name, sc.MinFreeBytes, sc.RetentionInterval = t.TempDir(), "edge1", -1, -1
	st, err := store.Open(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e, err := New(Config{Store: st, Edge: true, CertFiles: certFiles})
	if err != nil {
		t.Fatal(err)
	}
	if err := Ensure(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	return st, e
}

// checkAndList runs one check of e and lists the alarms f selects.
func checkAndList(t *testing.T, e *Engine, st *store.Store, f Filter) []Alarm {
	t.Helper()
	if err := e.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := List(context.Background(), st, f)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
