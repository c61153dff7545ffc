package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/store"
)

// TestCrashKeepsPubacked kills a gateway (TestGatewayProcess, in a child
// process, its store's commits made durable by the write-ahead log) with
// SIGKILL while 20 devices publish QoS 1 messages one at a time, five
// times over. After the last kill, every message that got a PUBACK is in
// /telemetry/by_device and /telemetry/events exactly once, each device's
// in the order it sent them, at dense offsets.
func TestCrashKeepsPubacked(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	e := newEnv(t, nil) // certificates; its own gateway stays idle
	dir := t.TempDir()
	const devices, rounds = 20, 5
	acked := make([][]string, devices) // device -> payloads acknowledged, in order
	var mu sync.Mutex
	for round := range rounds {
		os.Remove(filepath.Join(dir, "addr"))
		cmd := exec.Command(os.Args[0], "-test.run=^TestGatewayProcess$")
		cmd.Env = append(os.Environ(), "WEFT_TEST_GATEWAY_DIR="+dir, "WEFT_TEST_GATEWAY_CERTS="+e.dir)
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var addr string
		waitFor(t, "gateway process", func() bool {
			a, err := os.ReadFile(filepath.Join(dir, "addr"))
			addr = string(a)
			return err == nil
		})
		first := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		for d := range devices {
			dc := e.device(t, fmt.Sprintf("crash-%d", d), "pump")
			raw, err := dialFrom(2+d, addr)
			if err != nil {
				t.Fatal(err)
			}
			conn := tls.Client(raw, e.clientTLS(dc.cert))
			defer conn.Close()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := bufio.NewReader(conn)
				conn.Write(connectPacket(5, dc.id, nil))
				if pk, err := readPacket(r, 5); err != nil || pk.ReasonCode != 0 {
					return // killed before the device got in
				}
				topic := "devices/" + dc.id + "/telemetry"
				for i := 0; ; i++ {
					payload := fmt.Sprintf("%d-%d-%d", round, d, i)
					if _, err := conn.Write(publishPacket(5, topic, 1, uint16(i%60000+1), []byte(payload), nil)); err != nil {
						return
					}
					pk, err := readPacket(r, 5)
					if err != nil {
						return
					}
					if pk.FixedHeader.Type != packets.Puback || pk.ReasonCode != 0 {
						t.Errorf("device %d: %v %#x", d, pk.FixedHeader.Type, pk.ReasonCode)
						return
					}
					mu.Lock()
					acked[d] = append(acked[d], payload)
					mu.Unlock()
					once.Do(func() { close(first) })
				}
			}()
		}
		select {
		case <-first:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no PUBACK", round)
		}
		// Kill at a random moment under load.
		time.Sleep(time.Duration(20+rand.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		in.Close()
		wg.Wait()
	}

	st, err := store.Open(store.Config{Dir: filepath.Join(dir, "store"), Name: testEdge, MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer st.Close()
	ctx := context.Background()
	inEvents := map[string]int{}
	for _, m := range readAll(t, ctx, st, store.EventsStream, testEdge) {
		inEvents[string(m.Value)]++
	}
	total := 0
	for d := range devices {
		got := readAll(t, ctx, st, store.ByDeviceStream, fmt.Sprintf("crash-%d", d))
		seen := map[string]int{}
		pos := map[string]int{}
		for i, m := range got {
			seen[string(m.Value)]++
			pos[string(m.Value)] = i
		}
		last := -1
		for _, p := range acked[d] {
			if seen[p] != 1 || inEvents[p] != 1 {
				t.Fatalf("device %d: acknowledged %q is in by_device %d times, in events %d times", d, p, seen[p], inEvents[p])
			}
			if pos[p] <= last {
				t.Fatalf("device %d: %q out of order", d, p)
			}
			last = pos[p]
		}
		total += len(acked[d])
	}
	t.Logf("%d acknowledged messages over %d kills, all stored once", total, rounds)
}

// readAll reads a whole topic (partition 0), checking that offsets are
// dense from the low-water mark.
func readAll(t *testing.T, ctx context.Context, st *store.Store, path, topic string) []store.Message {
	t.Helper()
	s := st.Stream(path)
	low, next, err := s.Bounds(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Message
	for from := low; from < next; {
		got, err := s.Read(ctx, topic, 0, from, store.ReadOptions{Limit: 10000})
		if err != nil {
			t.Fatalf("%s %s at %d: %v", path, topic, from, err)
		}
		if len(got) == 0 {
			t.Fatalf("%s %s: nothing at %d below %d", path, topic, from, next)
		}
		for _, m := range got {
			if m.Offset != from {
				t.Fatalf("%s %s: offset %d where %d was expected", path, topic, m.Offset, from)
			}
			from++
			out = append(out, m)
		}
	}
	return out
}
