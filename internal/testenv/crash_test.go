package testenv

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// weftBin is the weft binary the crash tests run, built by TestMain unless
// the tests run with -short.
var weftBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "weft-testenv-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	weftBin = filepath.Join(dir, "weft")
	if out, err := exec.Command("go", "build", "-o", weftBin, "github.com/weft-io/weft/cmd/weft").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build weft: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a node running as a child process. Its listeners are given as
// 127.0.0.1:0 on the first start: the node picks free ports and names them
// in the line saying it started, and later starts reuse them, so that no
// test races another process for a port it picked beforehand.
type proc struct {
	t     *testing.T
	name  string
	args  []string
	cmd   *exec.Cmd
	mu    sync.Mutex
	log   bytes.Buffer
	addrs map[string]string // from the started line: "mqtt", "http", "sync"
}

// startedAttr matches the key=value attributes of the started line.
var startedAttr = regexp.MustCompile(`(\w+)=(\S+)`)

// addr returns the address the node reported for key (mqtt, http, sync).
func (p *proc) addr(key string) string {
	p.t.Helper()
	a := p.addrs[key]
	if a == "" {
		p.t.Fatalf("%s reported no %s address:\n%s", p.name, key, p.logs())
	}
	return a
}

// start runs weft with args and waits for the line saying it started;
// then it pins the listen flags (--mqtt, --http, --listen) to the
// addresses the node reported, for the next start.
func (p *proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(weftBin, p.args...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if line := sc.Text(); strings.Contains(line, " started") {
				once.Do(func() {
					p.addrs = map[string]string{}
					for _, m := range startedAttr.FindAllStringSubmatch(line, -1) {
						p.addrs[m[1]] = m[2]
					}
					close(ready)
				})
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.t.Fatalf("%s did not start:\n%s", p.name, p.logs())
	}
	for i, a := range p.args[:len(p.args)-1] {
		if key, ok := map[string]string{"--mqtt": "mqtt", "--http": "http", "--listen": "sync"}[a]; ok && p.addrs[key] != "" {
			p.args[i+1] = p.addrs[key]
		}
	}
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) signal(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	p.cmd.Wait()
	p.cmd = nil
}

// api calls a node's HTTP API.
type apiClient struct {
	addr, token string
	hc          *http.Client
}

func (a apiClient) do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+a.addr+path, rd)
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// tail returns the next offset of the uplink's topic and the last message's
// value.
func (a apiClient) tail(topic string) (uint64, string, error) {
	return a.tailOf("uplink/events", topic)
}

// tailOf is tail for any stream.
func (a apiClient) tailOf(stream, topic string) (uint64, string, error) {
	var r struct {
		Next     uint64 `json:"next"`
		Messages []struct {
			Value string `json:"value"`
		} `json:"messages"`
	}
	if err := a.do("GET", "/api/v1/streams/"+stream+"/messages?topic="+topic+"&from=end", nil, &r); err != nil {
		return 0, "", err
	}
	if r.Next == 0 {
		return 0, "", nil
	}
	next := r.Next
	if err := a.do("GET", fmt.Sprintf("/api/v1/streams/%s/messages?topic=%s&from=%d&limit=1", stream, topic, next-1), nil, &r); err != nil {
		return 0, "", err
	}
	if len(r.Messages) != 1 {
		return 0, "", fmt.Errorf("no message at %d", next-1)
	}
	return next, r.Messages[0].Value, nil
}

// TestCrashes runs a core and an edge as child processes, the edge taking
// appends through its API (and the core updates for its edges), and kills
// one or the other with SIGKILL at random points of the replication, twenty
// times each. After each restart the core catches up to the edge, and in
// the end the two stores are equal both ways: nothing lost, nothing applied
// twice.
func TestCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	f := New(t)
	f.IssueNode(certs.CoreNode, "core1")
	f.IssueNode(certs.EdgeNode, "edge1")
	f.IssueGateway("edge1")
	coreP := &proc{t: t, name: "core", args: []string{"core", "--data", f.DataDir("core1"), "--certs", f.Certs, "--name", "core1",
		"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "debug"}}
	coreP.start()
	defer coreP.signal(syscall.SIGKILL)
	edgeP := &proc{t: t, name: "edge", args: []string{"edge", "--data", f.DataDir("edge1"), "--certs", f.Certs, "--name", "edge1",
		"--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--core", coreP.addr("sync"), "--log-level", "debug"}}
	edgeP.start()
	defer edgeP.signal(syscall.SIGKILL)
	coreHTTP, edgeHTTP := coreP.addr("http"), edgeP.addr("http")
	hc := &http.Client{Timeout: 5 * time.Second}
	coreAPI := apiClient{addr: coreHTTP, token: f.token(certs.RoleAdmin), hc: hc}
	edgeAPI := apiClient{addr: edgeHTTP, token: f.token(certs.RoleAdmin), hc: hc}

	// The writer appends batches through the edge's API, retrying while
	// the edge is down.
	var pause sync.Mutex
	stop, done := make(chan struct{}), make(chan struct{})
	acked := 0
	go func() {
		defer close(done)
		retry := time.NewTicker(20 * time.Millisecond)
		defer retry.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var body struct {
				Messages []map[string]any `json:"messages"`
			}
			for j := range 50 {
				body.Messages = append(body.Messages, map[string]any{"topic": "edge1", "key": "k", "value": fmt.Sprintf("m-%d-%d-%0150d", i, j, i)})
			}
			pause.Lock()
			var out json.RawMessage
			err := edgeAPI.do("POST", "/api/v1/streams/uplink/events/messages", body, &out)
			if err == nil {
				acked += 50
			}
			if i%10 == 0 {
				// Updates flow the other way, from the core; one that
				// fails while the core is down is simply not made.
				coreAPI.do("POST", "/api/v1/streams/updates/down/messages", map[string]any{"topic": "all", "value": fmt.Sprintf("update-%d", i)}, &out)
			}
			pause.Unlock()
			if err != nil {
				select { // the edge is down: try again shortly
				case <-stop:
					return
				case <-retry.C:
				}
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-done
		}
	}()

	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\n--- core log tail:\n%s\n--- edge log tail:\n%s", append(args, lastLines(coreP.logs(), 30), lastLines(edgeP.logs(), 30))...)
	}
	const rounds = 20
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := range 2 * rounds {
		victim := edgeP
		if round%2 == 0 {
			victim = coreP
		}
		// Kill once the core has taken a random number of new messages:
		// in the middle of replication.
		var base uint64
		WaitFor(t, 30*time.Second, "the core's position", func() bool {
			n, _, err := coreAPI.tail("edge1")
			base = n
			return err == nil
		})
		target := base + 1 + uint64(rnd.IntN(1500))
		deadline := time.Now().Add(60 * time.Second)
		for {
			n, _, err := coreAPI.tail("edge1")
			if err == nil && n >= target {
				break
			}
			if time.Now().After(deadline) {
				fail("round %d: the core did not reach offset %d (at %d, %v)", round, target, n, err)
			}
			time.Sleep(5 * time.Millisecond) // polling with a deadline
		}
		victim.signal(syscall.SIGKILL)
		victim.start()

		// After the restart the core catches up with the edge.
		pause.Lock()
		deadline = time.Now().Add(60 * time.Second)
		for {
			en, ev, err1 := edgeAPI.tail("edge1")
			cn, cv, err2 := coreAPI.tail("edge1")
			if err1 == nil && err2 == nil && en == cn && ev == cv {
				break
			}
			if time.Now().After(deadline) {
				pause.Unlock()
				fail("round %d (%s killed): edge at %d (%v), core at %d (%v)", round, victim.name, en, err1, cn, err2)
			}
			time.Sleep(10 * time.Millisecond) // polling with a deadline
		}
		pause.Unlock()
	}
	close(stop)
	<-done
	// Let the last appends (and their audit records) reach the core, then
	// stop both and compare their stores.
	WaitFor(t, 60*time.Second, "the last messages at the core", func() bool {
		en, ev, err1 := edgeAPI.tail("edge1")
		cn, cv, err2 := coreAPI.tail("edge1")
		return err1 == nil && err2 == nil && en == cn && ev == cv
	})
	var links struct {
		Links []struct {
			Streams []struct {
				Path        string `json:"path"`
				LagMessages uint64 `json:"lag_messages"`
			} `json:"streams"`
		} `json:"links"`
	}
	WaitFor(t, 60*time.Second, "no lag at the edge", func() bool {
		if err := edgeAPI.do("GET", "/api/v1/links", nil, &links); err != nil || len(links.Links) != 1 {
			return false
		}
		for _, s := range links.Links[0].Streams {
			if s.LagMessages != 0 {
				return false
			}
		}
		return true
	})
	WaitFor(t, 60*time.Second, "the last updates at the edge", func() bool {
		cn, cv, err1 := coreAPI.tailOf("updates/down", "all")
		en, ev, err2 := edgeAPI.tailOf("updates/down", "all")
		return err1 == nil && err2 == nil && en == cn && ev == cv && cn > 0
	})
	edgeP.signal(syscall.SIGTERM)
	coreP.signal(syscall.SIGTERM)
	es, err := store.Open(store.Config{Dir: f.DataDir("edge1"), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	cs, err := store.Open(store.Config{Dir: f.DataDir("core1"), Name: "core1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	for _, path := range []string{store.UplinkStream, store.AuditStream, store.ShadowChanges} {
		if err := Equal(es, cs, path); err != nil {
			t.Fatal(err)
		}
	}
	if err := Equal(cs, es, store.UpdatesStream); err != nil {
		t.Fatal(err)
	}
	_, next, _ := es.Stream(store.UplinkStream).Bounds(t.Context(), "edge1", 0)
	if next < uint64(acked) {
		t.Fatalf("the edge holds %d messages, %d were acknowledged", next, acked)
	}
	t.Logf("%d rounds; %d messages acknowledged by the edge, all at the core", 2*rounds, acked)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
