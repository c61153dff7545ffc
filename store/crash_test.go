package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCrashChild is the child of TestCrashKeepsAcknowledged: it appends
// from many goroutines and prints every acknowledged position.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("WEFT_CRASH_DIR")
	if dir == "" {
		t.Skip("run by TestCrashKeepsAcknowledged")
	}
	s, err := Open(Config{Dir: dir, MinFreeBytes: -1, MemTableSize: 8 << 20})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(3)
	}
	round := os.Getenv("WEFT_CRASH_ROUND")
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 24; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				topic := "shared"
				if g%2 == 1 {
					topic = fmt.Sprintf("g%d", g)
				}
				val := fmt.Sprintf("%s-%d-%d", round, g, i)
				n := 1 + i%3
				batch := make([]Message, n)
				for j := range batch {
					batch[j] = Message{Value: []byte(fmt.Sprintf("%s-%d", val, j))}
				}
				pos, err := s.Stream(EventsStream).Append(ctx, topic, batch...)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				mu.Lock()
				for j, p := range pos {
					fmt.Fprintf(out, "%s %d %s\n", topic, p.Offset, batch[j].Value)
				}
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestCrashKeepsAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dir := t.TempDir()
	rounds := 20
	acked := map[string]map[uint64]string{} // topic -> offset -> value
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
		cmd.Env = append(os.Environ(), "WEFT_CRASH_DIR="+dir, "WEFT_CRASH_ROUND="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		first := true
		var kill <-chan time.Time
		n := 0
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				f := strings.Fields(l)
				if len(f) != 3 {
					if strings.HasPrefix(l, "PASS") || strings.HasPrefix(l, "ok") {
						continue
					}
					t.Fatalf("round %d: child said %q (stderr %s)", round, l, stderr.String())
				}
				off, _ := strconv.ParseUint(f[1], 10, 64)
				if acked[f[0]] == nil {
					acked[f[0]] = map[uint64]string{}
				}
				acked[f[0]][off] = f[2]
				n++
				if first {
					first = false
					kill = time.After(time.Duration(20+rand.IntN(300)) * time.Millisecond)
				}
			case <-kill:
				cmd.Process.Signal(syscall.SIGKILL)
				kill = nil
			}
		}
		cmd.Wait()
		if first {
			t.Fatalf("round %d: child acknowledged nothing; stderr: %s", round, stderr.String())
		}
		verifyAcked(t, dir, acked)
		t.Logf("round %d: %d acknowledged", round, n)
	}
}

// verifyAcked opens the store and checks that every acknowledged message
// is there with its value, offsets are dense, and no batch is corrupt.
func verifyAcked(t *testing.T, dir string, acked map[string]map[uint64]string) {
	t.Helper()
	s, err := Open(Config{Dir: dir, MinFreeBytes: -1, MemTableSize: 8 << 20})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	st := s.Stream(EventsStream)
	for topic, want := range acked {
		_, next, err := st.Bounds(ctx, topic, 0)
		if err != nil {
			t.Fatal(err)
		}
		var from uint64
		for from < next {
			got, err := st.Read(ctx, topic, 0, from, ReadOptions{Limit: 10000})
			if err != nil {
				t.Fatalf("topic %s read at %d: %v", topic, from, err)
			}
			for _, m := range got {
				if m.Offset != from {
					t.Fatalf("topic %s: offset %d where %d was expected (gap)", topic, m.Offset, from)
				}
				if v, ok := want[m.Offset]; ok && v != string(m.Value) {
					t.Fatalf("topic %s offset %d = %q, acknowledged %q", topic, m.Offset, m.Value, v)
				}
				from++
			}
			if len(got) == 0 {
				t.Fatalf("topic %s: nothing at %d below next %d", topic, from, next)
			}
		}
		for off := range want {
			if off >= next {
				t.Fatalf("topic %s: acknowledged offset %d lost (next is %d)", topic, off, next)
			}
		}
	}
}
