package external

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/models"
)

// Config configures the processes of a Launcher.
type Config struct {
	// Backoff is the wait before a program that exited, or was killed
	// for garbage, is started again; it doubles after each failure up to
	// MaxBackoff and is reset once the program answered after running
	// for MaxBackoff. Defaults 1s and 5m.
	Backoff, MaxBackoff time.Duration
	// StartGrace is how long the first answer after a start may take
	// when the deadline is shorter: an interpreter loading its model
	// must not be judged slow for it. Default 5s.
	StartGrace time.Duration
	// Logger receives the programs' starts, ends and standard error. Nil
	// discards them.
	Logger *slog.Logger
}

// maxStderrLines bounds the lines of standard error logged per start of a
// program.
const maxStderrLines = 20

// Launcher returns the models.Launch that runs each external version's
// program as a Process with cfg.
func Launcher(cfg Config) models.Launch {
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.StartGrace <= 0 {
		cfg.StartGrace = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return func(m models.Manifest, p models.ExternalParams, x models.Exec) models.Process {
		pr := &Process{cfg: cfg, m: m, p: p, exec: x, log: cfg.Logger.With("model", m.Ref())}
		// Started now, so that it loads while the readings come; a
		// failure is tried again on the first reading after the backoff.
		pr.mu.Lock()
		if err := pr.start(); err != nil {
			pr.failed("not started", err)
		}
		pr.mu.Unlock()
		return pr
	}
}

// Process is one version's program: started when launched, asked
// over the line protocol, started again after a backoff when it ends. Its
// methods are called by one goroutine at a time (the runner's).
type Process struct {
	cfg  Config
	m    models.Manifest
	p    models.ExternalParams
	exec models.Exec
	log  *slog.Logger

	mu      sync.Mutex
	cur     *child
	closed  bool
	seq     uint64
	fails   int
	next    time.Time // not started again before
	started time.Time
	fresh   bool // no answer asked of it since it started
	buf     []byte
	pending *pending
	starts  int
}

var _ models.Process = (*Process)(nil)

// child is one run of the program.
type child struct {
	cmd     *exec.Cmd
	stdin   *os.File
	stdout  *os.File
	answers chan answer // closed when its standard output ends
	quit    chan struct{}
	done    chan struct{} // closed once it was waited for
	exit    error
}

type answer struct {
	r   Response
	err error
}

// Starts returns how many times the program was started.
func (p *Process) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// Pid returns the program's process id while it runs, else 0.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.cmd.Process.Pid
}

// Score sends a reading and waits for its answer (Send, then Await).
func (p *Process) Score(device string, t time.Time, values map[string]float64, within time.Duration) (anomaly.Result, bool, string) {
	ok, fault := p.Send(device, t, values, within)
	if !ok || fault != "" {
		return anomaly.Result{}, ok, fault
	}
	res, fault := p.Await()
	return res, true, fault
}

// Send implements models.Process: it writes the reading's lines, the
// deadline counted from now.
func (p *Process) Send(device string, t time.Time, values map[string]float64, within time.Duration) (bool, string) {
	start := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = nil
	n := uint64(0)
	for _, c := range p.m.Channels {
		if _, ok := values[c]; ok {
			n++
		}
	}
	if n == 0 {
		return false, ""
	}
	if p.closed {
		return true, models.FaultCrash
	}
	if p.cur == nil {
		if time.Now().Before(p.next) {
			return true, models.FaultCrash
		}
		if err := p.start(); err != nil {
			p.failed("not started", err)
			return true, models.FaultCrash
		}
	}
	first := p.seq + 1 // from 1 in each start of the program
	p.buf = p.buf[:0]
	seq := first
	for _, c := range p.m.Channels {
		if v, ok := values[c]; ok {
			p.buf = Encode(p.buf, Request{Seq: seq, Device: device, Channel: c, T: t, Value: v})
			seq++
		}
	}
	c := p.cur
	p.seq += n
	if p.fresh {
		within, p.fresh = max(within, p.cfg.StartGrace), false
	}
	c.stdin.SetWriteDeadline(start.Add(within))
	if _, err := c.stdin.Write(p.buf); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// A line may be half written: the stream is lost.
			p.failed("not reading its input", err)
			return true, models.FaultSlow
		}
		p.failed("input closed", err)
		return true, models.FaultCrash
	}
	p.pending = &pending{c: c, first: first, n: n, deadline: start.Add(within)}
	return true, ""
}

// pending is a reading sent and not yet answered.
type pending struct {
	c        *child
	first, n uint64
	deadline time.Time
}

// Await implements models.Process: it waits for the answer to the last
// Send until its deadline.
func (p *Process) Await() (anomaly.Result, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.pending
	p.pending = nil
	if w == nil || w.c != p.cur {
		return anomaly.Result{}, models.FaultCrash // nothing sent, or the program since stopped
	}
	c, first, n := w.c, w.first, w.n
	timer := time.NewTimer(max(time.Until(w.deadline), 0))
	defer timer.Stop()
	threshold := p.p.Threshold
	if threshold <= 0 {
		threshold = models.DefaultExternalThreshold
	}
	var res anomaly.Result
	for got := uint64(0); got < n; {
		select {
		case a, ok := <-c.answers:
			if !ok {
				p.failed("exited", nil)
				return anomaly.Result{}, models.FaultCrash
			}
			if a.err != nil {
				p.failed("garbage", a.err)
				return anomaly.Result{}, models.FaultGarbage
			}
			if a.r.Seq < first {
				continue // the late answer to an earlier reading
			}
			if a.r.Seq != first+got {
				p.failed("garbage", fmt.Errorf("%w: seq %d, want %d", ErrGarbage, a.r.Seq, first+got))
				return anomaly.Result{}, models.FaultGarbage
			}
			got++
			detected := a.r.Score >= threshold
			if a.r.Detected != nil {
				detected = *a.r.Detected
			}
			if a.r.Score > res.Score || res.Detector == "" {
				res.Score = max(res.Score, a.r.Score)
				res.Detector = "external"
			}
			res.Detected = res.Detected || detected
		case <-timer.C:
			return anomaly.Result{}, models.FaultSlow
		}
	}
	if p.fails > 0 && time.Since(p.started) >= p.cfg.MaxBackoff {
		p.fails = 0
	}
	return res, ""
}

// start checks the executable and starts the program.
func (p *Process) start() error {
	if err := p.check(); err != nil {
		return err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return err
	}
	path, err := filepath.Abs(p.exec.Path) // run in its directory
	if err != nil {
		return err
	}
	cmd := exec.Command(path, p.p.Args...)
	cmd.Dir = filepath.Dir(path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8",
		"WEFT_PROTOCOL=" + strconv.Itoa(Version), "WEFT_MODEL=" + p.m.Ref(), "WEFT_MODEL_CLASS=" + p.m.Class,
		"WEFT_MODEL_CHANNELS=" + strings.Join(p.m.Channels, ",")}
	cmd.Stdin, cmd.Stdout = inR, outW
	cmd.Stderr = &stderrLog{log: p.log}
	// Wait gives up on standard error this long after the program ended
	// (something it started and left may hold it open).
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return err
	}
	inR.Close()
	outW.Close()
	c := &child{cmd: cmd, stdin: inW, stdout: outR, answers: make(chan answer, 256), quit: make(chan struct{}), done: make(chan struct{})}
	go c.read()
	go func() {
		c.exit = cmd.Wait()
		close(c.done)
	}()
	p.cur, p.started, p.seq, p.fresh = c, time.Now(), 0, true
	p.starts++
	p.log.Info("external model started", "pid", cmd.Process.Pid, "exec", p.exec.Path)
	return nil
}

// stderrLog logs the first maxStderrLines lines a program writes to its
// standard error, each cut at MaxLine bytes.
type stderrLog struct {
	log    *slog.Logger
	line   []byte
	logged int
}

func (w *stderrLog) Write(b []byte) (int, error) {
	for _, c := range b {
		if c != '\n' {
			if len(w.line) < MaxLine {
				w.line = append(w.line, c)
			}
			continue
		}
		if w.logged < maxStderrLines {
			w.log.Warn("external model stderr", "line", string(w.line))
		}
		w.logged++
		w.line = w.line[:0]
	}
	return len(b), nil
}

// check verifies that the bytes at the executable's path are those the
// manifest signed for, just before they are run.
func (p *Process) check() error {
	f, err := os.Open(p.exec.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, models.MaxExecSize+1))
	if err != nil {
		return err
	}
	var sum [32]byte
	h.Sum(sum[:0])
	if n != p.m.ExecSize || sum != p.m.ExecSHA256 {
		return fmt.Errorf("external: %s is not the executable signed for (%d bytes, sha256 %x)", p.exec.Path, n, sum)
	}
	return nil
}

// read passes the program's lines to answers until its output ends or
// the child is stopped.
func (c *child) read() {
	defer close(c.answers)
	br := bufio.NewReaderSize(c.stdout, MaxLine+1)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			c.send(answer{err: fmt.Errorf("%w: a line longer than %d bytes", ErrGarbage, MaxLine)})
			return
		}
		if len(bytes.TrimSpace(line)) > 0 {
			r, derr := Decode(line)
			if !c.send(answer{r: r, err: derr}) || derr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *child) send(a answer) bool {
	select {
	case c.answers <- a:
		return true
	case <-c.quit:
		return false
	}
}

// stop kills the child's process group and waits for it.
func (c *child) stop() error {
	close(c.quit)
	kill(c.cmd)
	c.stdin.Close()
	<-c.done
	c.stdout.Close()
	return c.exit
}

// failed stops the program after a failure and sets when it may start
// again.
func (p *Process) failed(why string, err error) {
	exit := ""
	if p.cur != nil {
		if e := p.cur.stop(); e != nil {
			exit = e.Error()
		}
		p.cur = nil
	}
	wait := p.cfg.Backoff << min(p.fails, 20)
	wait = min(wait, p.cfg.MaxBackoff)
	p.fails++
	p.next = time.Now().Add(wait)
	p.log.Warn("external model stopped", "why", why, "err", err, "exit", exit, "restart_in", wait)
}

// Close implements models.Process: it kills the program and waits for
// it; the process is not started again.
func (p *Process) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.cur == nil {
		return nil
	}
	p.cur.stop()
	p.cur = nil
	p.log.Info("external model closed")
	return nil
}
