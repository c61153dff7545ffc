package console

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// fillFleet puts n shadows of three classes on two edges, every fifth
// out of sync.
func fillFleet(tb testing.TB, st *store.Store, n int) {
	tb.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	const workers = 64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				class := []string{"pump", "chiller", "meter"}[i%3]
				desired := 4
				if i%5 == 0 {
					desired = 5
				}
				doc := fmt.Sprintf(`{"reported":{"setpoint":4,"firmware":"1.0.0"},"desired":{"setpoint":%d},"class":%q,"edge":"edge-%d","connected":%v,"score":0.1,"last_seen":"2026-03-01T11:00:00Z"}`, desired, class, i%2, i%4 != 0)
				if _, err := st.Table(store.ShadowsTable).Put(context.Background(), fmt.Sprintf("dev-%06d", i), json.RawMessage(doc)); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		tb.Fatal(first)
	}
}

// BenchmarkConsoleDeviceList measures, with 100k devices in the store, the
// console's device list page (from a random place), a filtered page, the
// fleet overview and a device page, reporting p50 and p99.
//
//	go test -run '^$' -bench ConsoleDeviceList -benchtime 500x ./console
func BenchmarkConsoleDeviceList(b *testing.B) {
	e := newBenchEnv(b)
	fillFleet(b, e.st, 100_000)
	rng := mrand.New(mrand.NewPCG(1, 2))
	id := func() string { return fmt.Sprintf("dev-%06d", rng.IntN(100_000)) }
	for _, bb := range []struct {
		name string
		path func() string
	}{
		{"list", func() string { return "/devices?after=" + id() }},
		{"list-filtered", func() string { return "/devices?class=pump&sync=no&after=" + id() }},
		{"search", func() string { return "/devices?q=" + id()[:9] }},
		{"overview", func() string { return "/" }},
		{"device", func() string { return "/devices/" + id() }},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				resp, err := e.client.Get(e.url + bb.path())
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d", bb.path(), resp.StatusCode)
				}
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

// benchEnv is a console with a signed-in client, for benchmarks.
type benchEnv struct {
	st     *store.Store
	url    string
	client *http.Client
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	st, err := store.Open(store.Config{Dir: b.TempDir(), Name: "core", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	a, err := api.New(api.Config{Store: st, TokenKey: pub})
	if err != nil {
		b.Fatal(err)
	}
	con, err := New(Config{API: a})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(con)
	b.Cleanup(ts.Close)
	tok, err := certs.IssueToken(priv, certs.TokenClaims{Subject: "bench", Role: certs.RoleViewer}, 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	jar.SetCookies(mustURL(ts.URL), []*http.Cookie{{Name: CookieName, Value: tok, Path: "/"}})
	return &benchEnv{st: st, url: ts.URL, client: &http.Client{Jar: jar}}
}
