package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/store"
)

// recordLog keeps the records logged at warning level and above.
type recordLog struct {
	mu   sync.Mutex
	recs []string
}

func (l *recordLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (l *recordLog) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l *recordLog) WithGroup(string) slog.Handler                 { return l }
func (l *recordLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value.Any())
		if err, ok := a.Value.Any().(error); ok && errors.Is(err, store.ErrClosed) {
			b.WriteString(" [store closed]")
		}
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}

func (l *recordLog) find(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if strings.Contains(r, substr) {
			out = append(out, r)
		}
	}
	return out
}

// gatewayFrame matches a goroutine running, or started by, the gateway's
// code or mochi's (not the tests').
var gatewayFrame = regexp.MustCompile(`/gateway/[a-z]+\.go:|/third_party/mochi-mqtt/`)

// gatewayGoroutines returns the stacks of the goroutines of gateway or
// mochi code, other than the caller's.
func gatewayGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // the caller
			continue
		}
		for _, line := range strings.Split(g, "\n") {
			if gatewayFrame.MatchString(line) && !strings.Contains(line, "_test.go:") {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// TestShutdownWaits: once Shutdown returns, under load (devices
// publishing, updates going out), nothing of the gateway runs any more:
// the store is closed and no goroutine of the gateway is left, and none
// met the closed store.
func TestShutdownWaits(t *testing.T) {
	logs := &recordLog{}
	e := newEnv(t, func(c *Config) { c.Logger = slog.New(logs) })

	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for i := range 3 {
		id := fmt.Sprintf("load-%d", i)
		c := e.mustPaho(t, e.device(t, id, "pump"), persistent())
		c.subscribe(t, 1, "updates/class/pump/#")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := c.Publish(ctx, &paho.Publish{Topic: "devices/" + id + "/telemetry", QoS: byte(n % 3), Payload: []byte("x")})
				cancel()
				if err != nil {
					return // the gateway is gone
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := e.st.Stream(store.UpdatesStream).Append(context.Background(), "class/pump",
				store.Message{Value: []byte("u"), Headers: map[string]string{HeaderSubtopic: fmt.Sprint(n % 7)}})
			if err != nil {
				return // the store is closed
			}
		}
	}()
	m := e.srv.Metrics()
	waitFor(t, "messages in and out", func() bool { return m.MessagesIn(1) > 50 && m.MessagesOut(1) > 50 })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatalf("store close: %v", err)
	}
	gs := gatewayGoroutines()
	for _, g := range gs {
		// A goroutine may still be returning from the function whose
		// WaitGroup it signalled, but none may be waiting for anything.
		if state := g[strings.Index(g, "[")+1 : strings.Index(g, "]")]; state != "runnable" && state != "running" {
			t.Fatalf("a goroutine of the gateway still waits after Shutdown:\n\n%s", g)
		}
	}
	if len(gs) > 0 {
		// Those must be gone soon, and touch nothing on their way.
		deadline := time.Now().Add(10 * time.Second)
		for len(gs) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			gs = gatewayGoroutines()
		}
		if len(gs) > 0 {
			t.Fatalf("%d goroutines of the gateway left after Shutdown:\n\n%s", len(gs), strings.Join(gs, "\n\n"))
		}
	}
	if recs := logs.find("[store closed]"); len(recs) > 0 {
		t.Fatalf("the gateway used the store after Shutdown:\n%s", strings.Join(recs, "\n"))
	}
}
