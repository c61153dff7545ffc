package api

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// fleetSize is the fleet of the scale test and the benchmark.
const fleetSize = 100_000

// bigFleet is a server over a store holding fleetSize shadows, and a
// viewer token.
func bigFleet(tb testing.TB) (url, token string) {
	tb.Helper()
	st, err := store.Open(store.Config{Dir: tb.TempDir(), Name: "core", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	fillShadows(tb, st, fleetSize)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := New(Config{Store: st, TokenKey: pub})
	if err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	tb.Cleanup(ts.Close)
	token, err = certs.IssueToken(priv, certs.TokenClaims{Subject: "bench", Role: certs.RoleViewer}, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return ts.URL, token
}

func getJSON(tb testing.TB, url, token string, v any) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		tb.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestDeviceList100k pages through 100k devices, whole and filtered: every
// device comes once, in order, and a rare filter's pages stay bounded.
func TestDeviceList100k(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100k shadows")
	}
	url, token := bigFleet(t)
	walk := func(query string) (ids []string, pages int) {
		after := ""
		for {
			var page DevicesResponse
			getJSON(t, url+"/api/v1/devices?"+query+"&after="+after, token, &page)
			pages++
			for _, d := range page.Devices {
				ids = append(ids, d.ID)
			}
			if page.Next == "" {
				return ids, pages
			}
			after = page.Next
		}
	}
	all, pages := walk("limit=1000")
	if len(all) != fleetSize || pages != fleetSize/1000 || !slices.IsSorted(all) || all[0] != "dev-000000" {
		t.Fatalf("listed %d devices in %d pages", len(all), pages)
	}
	pumps, _ := walk("class=pump&limit=1000")
	if len(pumps) != (fleetSize+2)/3 {
		t.Fatalf("%d pumps", len(pumps))
	}
	// One device in a hundred is anomalous: a page reads at most 5000
	// shadows, so the walk takes about fleetSize/5000 pages.
	anomalous, pages := walk("anomaly=true&limit=1000")
	if len(anomalous) != fleetSize/100 || pages < fleetSize/5000 {
		t.Fatalf("%d anomalous devices in %d pages", len(anomalous), pages)
	}
	var d map[string]any
	getJSON(t, url+"/api/v1/devices/dev-099999", token, &d)
	if d["id"] != "dev-099999" {
		t.Fatalf("device %v", d)
	}
}

// BenchmarkDeviceList measures, with 100k devices in the store, the API's
// latency for a page of the device list (100 devices from a random
// place), a filtered page, and a device's shadow, reporting p50 and p99.
//
//	go test -run '^$' -bench DeviceList -benchtime 2000x ./api
func BenchmarkDeviceList(b *testing.B) {
	url, token := bigFleet(b)
	rng := mrand.New(mrand.NewPCG(1, 2))
	id := func() string { return fmt.Sprintf("dev-%06d", rng.IntN(fleetSize)) }
	for _, bb := range []struct {
		name string
		path func() string
	}{
		{"list", func() string { return "/api/v1/devices?limit=100&after=" + id() }},
		{"list-filtered", func() string { return "/api/v1/devices?limit=100&class=pump&in_sync=false&after=" + id() }},
		{"device", func() string { return "/api/v1/devices/" + id() }},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				getJSON(b, url+bb.path(), token, nil)
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			q := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
		})
	}
}
