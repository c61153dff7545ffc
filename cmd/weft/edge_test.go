package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/store"
)

// startEdge runs `weft edge` as a child process on free loopback ports it
// picks itself, waits until its MQTT listener accepts connections, and
// returns the MQTT address it reported.
func startEdge(t *testing.T, data, certsDir string) (cmd *exec.Cmd, mqttAddr string) {
	t.Helper()
	cmd = exec.Command(weftBin, "edge", "--data", data, "--certs", certsDir, "--name", "edge1", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var log strings.Builder
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if line := sc.Text(); strings.Contains(line, "edge started") {
				once.Do(func() {
					if _, rest, ok := strings.Cut(line, " mqtt="); ok {
						mqttAddr, _, _ = strings.Cut(rest, " ")
					}
					close(ready)
				})
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("edge did not start:\n%s", log.String())
	}
	if mqttAddr == "" {
		t.Fatalf("edge reported no MQTT address:\n%s", log.String())
	}
	return cmd, mqttAddr
}

// TestEdgeCrashKeepsAcknowledged kills `weft edge` with SIGKILL during QoS 1
// load, twenty times; after each kill, every message whose PUBACK a device
// received is in /telemetry/events, and offsets are dense.
func TestEdgeCrashKeepsAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dir := t.TempDir()
	certsDir, data := filepath.Join(dir, "certs"), filepath.Join(dir, "data")
	if err := certs.Init(certsDir, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := auth.IssueGateway("edge1", []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := auth.Save(iss); err != nil {
		t.Fatal(err)
	}
	const devices = 8
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("crash-%d", i)
	}
	creds, pool, err := device.Credentials(certsDir, ids, "pump")
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	var mu sync.Mutex
	for round := 0; round < 20; round++ {
		cmd, mqttAddr := startEdge(t, data, certsDir)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var first sync.Once
		gotOne := make(chan struct{})
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := device.Connect(ctx, device.DialConfig{Addr: mqttAddr, Roots: pool}, id, creds[i], true, nil)
				if err != nil {
					return // the edge may already be gone
				}
				for n := 0; ctx.Err() == nil; n++ {
					payload := fmt.Sprintf("r%d-%s-%d", round, id, n)
					resp, err := c.Publish(ctx, &paho.Publish{Topic: "devices/" + id + "/telemetry", QoS: 1, Payload: []byte(payload)})
					if err != nil {
						return
					}
					if resp != nil && resp.ReasonCode < 0x80 {
						mu.Lock()
						acked[payload] = true
						mu.Unlock()
						first.Do(func() { close(gotOne) })
					}
				}
			}()
		}
		select {
		case <-gotOne:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no PUBACK within 30 s", round)
		}
		time.Sleep(time.Duration(10+rand.IntN(300)) * time.Millisecond) // let load run, then kill at a random moment
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		cancel()
		wg.Wait()

		st, err := store.Open(store.Config{Dir: data, Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		found := map[string]bool{}
		events := st.Stream(store.EventsStream)
		_, next, err := events.Bounds(context.Background(), "edge1", 0)
		if err != nil {
			t.Fatal(err)
		}
		for from := uint64(0); from < next; {
			msgs, err := events.Read(context.Background(), "edge1", 0, from, store.ReadOptions{Limit: 10000})
			if err != nil {
				t.Fatalf("round %d: read at %d: %v", round, from, err)
			}
			for _, m := range msgs {
				if m.Offset != from {
					t.Fatalf("round %d: offset %d where %d was expected", round, m.Offset, from)
				}
				found[string(m.Value)] = true
				from++
			}
		}
		mu.Lock()
		n := 0
		for p := range acked {
			if !found[p] {
				dev := strings.Join(strings.Split(p, "-")[1:3], "-")
				bd, err := st.Stream(store.ByDeviceStream).Read(context.Background(), dev, 0, 0, store.ReadOptions{Limit: 100000})
				inBD := false
				for _, m := range bd {
					if string(m.Value) == p {
						inBD = true
					}
				}
				t.Fatalf("round %d: message %q was acknowledged but is not in %s (events next %d, by_device %s: %d msgs, %v, found there %v)", round, p, store.EventsStream, next, dev, len(bd), err, inBD)
			}
			n++
		}
		mu.Unlock()
		st.Close()
		t.Logf("round %d: %d acknowledged so far, %d stored", round, n, next)
	}
}
