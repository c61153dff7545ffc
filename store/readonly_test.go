package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// nobody is the unprivileged user the read-only test runs its node as.
const nobody = 65534

// TestReadOnlyChild is the child of TestReadOnlyUnderLoad, run as user
// nobody: it appends from four goroutines until its stdin closes (or
// 200,000 messages), printing "ack TOPIC OFFSET VALUE" for every
// acknowledged message and "refused DISKFULL ERROR" for every refusal,
// then closes the store and exits.
func TestReadOnlyChild(t *testing.T) {
	dir := os.Getenv("WEFT_READONLY_DIR")
	if dir == "" {
		t.Skip("run by TestReadOnlyUnderLoad")
	}
	s, err := Open(Config{Dir: dir, MemTableSize: 1 << 20, MinFreeBytes: 1, RetentionInterval: -1})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(3)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("g%d", g)
			pace := time.NewTicker(5 * time.Millisecond) // while refused, do not spin
			defer pace.Stop()
			for i := 0; i < 50_000 && ctx.Err() == nil; i++ {
				val := fmt.Sprintf("%s-%d-%s", topic, i, strings.Repeat("x", 200))
				pos, err := s.Stream(EventsStream).Append(ctx, topic, Message{Value: []byte(val)})
				mu.Lock()
				if err != nil {
					if ctx.Err() == nil {
						fmt.Fprintf(out, "refused %v %s\n", errors.Is(err, ErrDiskFull), strings.ReplaceAll(err.Error(), "\n", " "))
					}
				} else {
					fmt.Fprintf(out, "ack %s %d %s\n", topic, pos[0].Offset, val)
				}
				out.Flush()
				mu.Unlock()
				if err != nil {
					select {
					case <-pace.C:
					case <-ctx.Done():
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(5)
	}
}

// TestReadOnlyUnderLoad runs a store as user nobody in a child process
// under write load and makes its data directory read-only (chmod, which
// binds nobody): writes are refused with ErrDiskFull naming the read-only
// directory, the process neither panics nor acknowledges what it did not
// write, and when the directory is writable again it takes writes again;
// it then closes cleanly and every acknowledged message is in the store.
func TestReadOnlyUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the child as user nobody (chmod does not bind the directory's owner; TestReadOnlyDirectory covers a non-root user)")
	}
	// A directory nobody can reach: the test binary and the data.
	base, err := os.MkdirTemp("", "weft-readonly-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(base, "data"), 0o700); os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "store.test")
	copyFile(t, os.Args[0], bin, 0o755)
	dir := filepath.Join(base, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-test.run=^TestReadOnlyChild$", "-test.v=false")
	cmd.Dir = base
	cmd.Env = append(os.Environ(), "WEFT_READONLY_DIR="+dir, "HOME="+base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })

	var mu sync.Mutex
	acked := map[string]map[uint64]string{}
	nacked, nrefused := 0, 0
	var refusals []string
	var other []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			f := strings.SplitN(l, " ", 4)
			mu.Lock()
			switch {
			case f[0] == "ack" && len(f) == 4:
				off, _ := strconv.ParseUint(f[2], 10, 64)
				if acked[f[1]] == nil {
					acked[f[1]] = map[uint64]string{}
				}
				acked[f[1]][off] = f[3]
				nacked++
			case f[0] == "refused":
				nrefused++
				if len(refusals) < 5 {
					refusals = append(refusals, l)
				}
			case l == "PASS" || strings.HasPrefix(l, "ok"):
			default:
				other = append(other, l)
			}
			mu.Unlock()
		}
	}()
	counts := func() (int, int) { mu.Lock(); defer mu.Unlock(); return nacked, nrefused }
	waitN := func(what string, cond func(acked, refused int) bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			a, r := counts()
			if cond(a, r) {
				return
			}
			select {
			case <-done:
				t.Fatalf("the child ended waiting for %s (%d acknowledged, %d refused); stderr: %s", what, a, r, stderr.String())
			case <-tick.C:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (%d acknowledged, %d refused); stderr: %s", what, a, r, stderr.String())
			}
		}
	}

	waitN("writes under load", func(a, _ int) bool { return a >= 2000 })
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	waitN("writes refused", func(_, r int) bool { return r >= 50 })
	a0, _ := counts()
	mu.Lock()
	for _, l := range refusals {
		if !strings.HasPrefix(l, "refused true ") || !strings.Contains(l, "read-only") || !strings.Contains(l, dir) {
			t.Errorf("refusal %q: want ErrDiskFull naming the read-only directory", l)
		}
	}
	mu.Unlock()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	waitN("writes taken again", func(a, _ int) bool { return a >= a0+2000 })
	stdin.Close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the child did not stop within 30 s of being asked; stderr: %s", stderr.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v; stderr: %s", err, stderr.String())
	}
	if len(other) > 0 {
		t.Errorf("the child said: %q", other)
	}
	if strings.Contains(stderr.String(), "panic") {
		t.Fatalf("the child panicked: %s", stderr.String())
	}
	a, r := counts()
	t.Logf("%d acknowledged, %d refused; first refusal: %s", a, r, refusals[0])
	verifyAcked(t, dir, acked)
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
