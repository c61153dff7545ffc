// Package bench measures edge-to-core replication for `weft bench sync`:
// an edge's store and a core's store in one process, linked over QUIC on
// loopback with the nodes' TLS and QUIC settings (package link). It
// reports the raw throughput of one quic-go stream as the baseline, the
// replication of small and large records, the lag at a steady rate, a
// catch-up with the latency of shadow changes and updates during it, a
// capped link, and a volume mirror. It is not used by the nodes.
package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/link"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/replicate"
	"github.com/weft-io/weft/sync/wire"
)

// Config describes a run of `weft bench sync`: an edge's store and a
// core's store in one process, replicating over a real QUIC link on
// loopback.
type Config struct {
	// Dir holds the stores and certificates. Default: a temporary
	// directory, removed at the end.
	Dir string
	// RawBytes is how much the raw QUIC baseline sends. Default 1 GiB.
	RawBytes int64
	// Small and Large are how many 200-byte and 64 KiB records are
	// replicated. Defaults 1,000,000 and 8,000.
	Small, Large int
	// Rate and Duration shape the steady-state run. Defaults 20,000
	// messages a second for 10 s.
	Rate     int
	Duration time.Duration
	// Backlog is how many 200-byte messages pile up while the link is
	// down before the catch-up run. Default 5,000,000.
	Backlog int
	// Cap is the bandwidth cap (bytes per second) of the capped run, which
	// replicates 3 s worth of 1 KiB records. Default 10 MB/s.
	Cap int64
	// MirrorBytes is how much the mirror run carries from the core's
	// /models to the edge, in files of 8 MiB of random bytes. Default
	// 256 MiB.
	MirrorBytes int64
	// Progress, if set, receives a line per step.
	Progress io.Writer
}

// Result is what a run measured.
type Result struct {
	RawMBps float64 `json:"raw_quic_mb_per_s"`

	SmallMsgsPerSec float64 `json:"small_msgs_per_s"`
	SmallMBps       float64 `json:"small_mb_per_s"`
	LargeMsgsPerSec float64 `json:"large_msgs_per_s"`
	LargeMBps       float64 `json:"large_mb_per_s"`

	SteadyRate float64       `json:"steady_msgs_per_s"`
	LagP50     time.Duration `json:"steady_lag_p50_ns"`
	LagP99     time.Duration `json:"steady_lag_p99_ns"`

	Backlog           int           `json:"backlog"`
	CatchUp           time.Duration `json:"catch_up_ns"`
	CatchUpMsgsPerSec float64       `json:"catch_up_msgs_per_s"`
	ShadowP50         time.Duration `json:"shadow_p50_ns"`
	ShadowP99         time.Duration `json:"shadow_p99_ns"`
	UpdatesP50        time.Duration `json:"updates_p50_ns"`
	UpdatesP99        time.Duration `json:"updates_p99_ns"`

	Cap         int64   `json:"cap_bytes_per_s"`
	CappedBytes float64 `json:"capped_bytes_per_s"`

	MirrorBytes int64   `json:"mirror_bytes"`
	MirrorMBps  float64 `json:"mirror_mb_per_s"`
}

type benchEnv struct {
	dir        string
	auth       *certs.Authority
	core, edge wire.TLSConfig
	progress   io.Writer
}

func (b *benchEnv) logf(format string, args ...any) {
	if b.progress != nil {
		fmt.Fprintf(b.progress, format+"\n", args...)
	}
}

// Run runs the sync benchmarks.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.RawBytes <= 0 {
		cfg.RawBytes = 1 << 30
	}
	if cfg.Small <= 0 {
		cfg.Small = 1_000_000
	}
	if cfg.Large <= 0 {
		cfg.Large = 8000
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 20000
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = 5_000_000
	}
	if cfg.Cap <= 0 {
		cfg.Cap = 10_000_000
	}
	if cfg.MirrorBytes <= 0 {
		cfg.MirrorBytes = 256 << 20
	}
	var res Result
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "weft-bench-sync-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	env := &benchEnv{dir: dir, progress: cfg.Progress}
	cd := filepath.Join(dir, "certs")
	if err := certs.Init(cd, true); err != nil {
		return res, err
	}
	auth, err := certs.Load(cd)
	if err != nil {
		return res, err
	}
	env.auth = auth
	if env.core, err = benchTLS(auth, certs.CoreNode, "bench-core"); err != nil {
		return res, err
	}
	if env.edge, err = benchTLS(auth, certs.EdgeNode, "bench-edge"); err != nil {
		return res, err
	}

	env.logf("raw QUIC, one stream, %d MiB", cfg.RawBytes>>20)
	if res.RawMBps, err = env.raw(ctx, cfg.RawBytes); err != nil {
		return res, fmt.Errorf("raw QUIC: %w", err)
	}
	env.logf("replicating %d records of 200 B", cfg.Small)
	if res.SmallMsgsPerSec, res.SmallMBps, _, err = env.drain(ctx, "small", cfg.Small, 200, nil); err != nil {
		return res, fmt.Errorf("200-byte records: %w", err)
	}
	env.logf("replicating %d records of 64 KiB", cfg.Large)
	if res.LargeMsgsPerSec, res.LargeMBps, _, err = env.drain(ctx, "large", cfg.Large, 64<<10, nil); err != nil {
		return res, fmt.Errorf("64 KiB records: %w", err)
	}
	env.logf("steady state: %d msgs/s for %s", cfg.Rate, cfg.Duration)
	if res.SteadyRate, res.LagP50, res.LagP99, err = env.steady(ctx, cfg.Rate, cfg.Duration); err != nil {
		return res, fmt.Errorf("steady state: %w", err)
	}
	env.logf("catch-up of %d backlogged messages", cfg.Backlog)
	res.Backlog = cfg.Backlog
	var side *sideLatency
	if res.CatchUpMsgsPerSec, _, side, err = env.drain(ctx, "catchup", cfg.Backlog, 200, &sideLatency{}); err != nil {
		return res, fmt.Errorf("catch-up: %w", err)
	}
	res.CatchUp = time.Duration(float64(cfg.Backlog) / res.CatchUpMsgsPerSec * float64(time.Second))
	res.ShadowP50, res.ShadowP99 = percentile(side.shadow, 50), percentile(side.shadow, 99)
	res.UpdatesP50, res.UpdatesP99 = percentile(side.updates, 50), percentile(side.updates, 99)
	env.logf("capped at %d bytes/s", cfg.Cap)
	res.Cap = cfg.Cap
	if res.CappedBytes, err = env.capped(ctx, cfg.Cap); err != nil {
		return res, fmt.Errorf("capped: %w", err)
	}
	env.logf("mirroring %d MiB of files down", cfg.MirrorBytes>>20)
	res.MirrorBytes = cfg.MirrorBytes
	if res.MirrorMBps, err = env.mirror(ctx, cfg.MirrorBytes); err != nil {
		return res, fmt.Errorf("mirror: %w", err)
	}
	return res, nil
}

// mirror writes total bytes of files into the core's /models and times
// their volume mirror to the edge, from the link coming up to the update
// being published there.
func (b *benchEnv) mirror(ctx context.Context, total int64) (float64, error) {
	p, err := b.pair("mirror")
	if err != nil {
		return 0, err
	}
	defer p.close()
	for i := 0; int64(i)*(8<<20) < total; i++ {
		n := min(8<<20, total-int64(i)*(8<<20))
		if _, err := p.core.File(fmt.Sprintf("/models/bench/part-%04d.bin", i)).Write(ctx, io.LimitReader(rand.Reader, n)); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	if err := p.linkWith(link.ClientConfig{TLS: b.edge, Mirrors: []mirror.Spec{{Volume: "models", Dir: wire.Down}}}); err != nil {
		return 0, err
	}
	for {
		if last, err := p.edge.LastMirror("models"); err != nil {
			return 0, err
		} else if last != "" {
			break
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return float64(total) / time.Since(start).Seconds() / 1e6, nil
}

// capped replicates about three seconds' worth of 1 KiB records through a
// link capped at rate bytes a second, uncompressed, and returns the bytes a
// second it sent.
func (b *benchEnv) capped(ctx context.Context, rate int64) (float64, error) {
	p, err := b.pair("capped")
	if err != nil {
		return 0, err
	}
	defer p.close()
	n := int(3 * rate / 1024)
	if err := fill(ctx, p.edge, n, 1024); err != nil {
		return 0, err
	}
	mon := replicate.NewMonitor("bench-edge", nil)
	start := time.Now()
	if err := p.linkWith(link.ClientConfig{TLS: b.edge, RateLimit: rate, NoCompression: true, Monitor: mon}); err != nil {
		return 0, err
	}
	if err := waitNext(ctx, p.core.Stream(store.UplinkStream), "bench-edge", uint64(n)); err != nil {
		return 0, err
	}
	el := time.Since(start)
	var sent int64
	for _, l := range mon.Links() {
		for _, s := range l.Streams {
			if s.Direction == replicate.DirSend {
				sent += s.Bytes
			}
		}
	}
	// The last acknowledgements may still be on their way: count what
	// was sent from the records themselves when the monitor lags.
	sent = max(sent, int64(n)*1024)
	return float64(sent) / el.Seconds(), nil
}

func benchTLS(auth *certs.Authority, role, name string) (wire.TLSConfig, error) {
	iss, err := auth.IssueNode(role, name, []string{"127.0.0.1"}, 0)
	if err != nil {
		return wire.TLSConfig{}, err
	}
	cf, kf, err := auth.Save(iss)
	if err != nil {
		return wire.TLSConfig{}, err
	}
	pair, err := certs.LoadKeyPair(cf, kf)
	if err != nil {
		return wire.TLSConfig{}, err
	}
	pool, err := certs.Pool(auth.FabricCA.PEM)
	if err != nil {
		return wire.TLSConfig{}, err
	}
	return wire.TLSConfig{Certificate: pair, FabricCAs: pool}, nil
}

// raw measures one QUIC stream's throughput with the links' TLS and QUIC
// settings: the baseline replication is compared with.
func (b *benchEnv) raw(ctx context.Context, total int64) (float64, error) {
	ln, err := wire.Listen("127.0.0.1:0", wire.ServerTLS(b.core), nil, nil)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	got := make(chan error, 1)
	var end time.Time
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			got <- err
			return
		}
		s, err := c.AcceptStream(ctx)
		if err != nil {
			got <- err
			return
		}
		n, err := io.Copy(io.Discard, s)
		end = time.Now()
		if err == nil && n != total {
			err = fmt.Errorf("received %d of %d bytes", n, total)
		}
		s.Write([]byte{1})
		s.Close()
		got <- err
	}()
	c, err := wire.Dial(ctx, ln.Addr().String(), wire.ClientTLS(b.edge), nil)
	if err != nil {
		return 0, err
	}
	defer wire.Close(c, nil)
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	for sent := int64(0); sent < total; {
		n := min(int64(len(buf)), total-sent)
		if _, err := s.Write(buf[:n]); err != nil {
			return 0, err
		}
		sent += n
	}
	s.Close()
	if err := <-got; err != nil {
		return 0, err
	}
	return float64(total) / end.Sub(start).Seconds() / 1e6, nil
}

// pairOf opens a fresh edge and core store and the server; the link is
// started by the caller.
type benchPair struct {
	edge, core *store.Store
	srv        *link.Server
	ln         *wire.Listener
	stopSrv    context.CancelFunc
	srvDone    chan struct{}
	stopLink   context.CancelFunc
	linkDone   chan struct{}
}

func (b *benchEnv) pair(name string) (*benchPair, error) {
	sc := func(sub, node string) store.Config {
		return store.Config{Dir: filepath.Join(b.dir, name, sub), Name: node, MinFreeBytes: -1, RetentionInterval: -1}
	}
	p := &benchPair{}
	var err error
	if p.edge, err = store.Open(sc("edge", "bench-edge")); err != nil {
		return nil, err
	}
	if p.core, err = store.Open(sc("core", "bench-core")); err != nil {
		p.edge.Close()
		return nil, err
	}
	if p.srv, err = link.NewServer(link.ServerConfig{Store: p.core, TLS: b.core}); err != nil {
		p.close()
		return nil, err
	}
	if p.ln, err = p.srv.Listen("127.0.0.1:0"); err != nil {
		p.close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.stopSrv, p.srvDone = cancel, make(chan struct{})
	go func() { p.srv.Serve(ctx, p.ln); close(p.srvDone) }()
	return p, nil
}

func (p *benchPair) link(tc wire.TLSConfig) error {
	return p.linkWith(link.ClientConfig{TLS: tc})
}

func (p *benchPair) linkWith(lc link.ClientConfig) error {
	lc.Store, lc.Addr = p.edge, p.ln.Addr().String()
	lc.Backoff = replicate.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	l, err := link.NewClient(lc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.stopLink, p.linkDone = cancel, make(chan struct{})
	go func() { l.Run(ctx); close(p.linkDone) }()
	return nil
}

func (p *benchPair) close() {
	if p.stopLink != nil {
		p.stopLink()
		<-p.linkDone
	}
	if p.stopSrv != nil {
		p.stopSrv()
		p.ln.Close()
		<-p.srvDone
	}
	if p.core != nil {
		p.core.Close()
	}
	if p.edge != nil {
		p.edge.Close()
	}
}

func payload(i, size int) []byte {
	v := make([]byte, size)
	// Telemetry-like: a varying head and a repetitive body, so that zstd
	// has about as much to gain as on real readings.
	copy(v, fmt.Sprintf(`{"seq":%d,"t":%d.%d,"v":[`, i, i%97, i%13))
	for j := 24; j < size; j++ {
		v[j] = "0123456789,."[(i+j*j)%12]
	}
	return v
}

// fill appends n messages of size bytes to the edge's uplink.
func fill(ctx context.Context, st *store.Store, n, size int) error {
	per := max(1, min(2000, (2<<20)/size))
	for i := 0; i < n; i += per {
		msgs := make([]store.Message, 0, per)
		for j := i; j < min(n, i+per); j++ {
			msgs = append(msgs, store.Message{Value: payload(j, size)})
		}
		if _, err := st.AppendMany(ctx, []store.AppendRequest{{Path: store.UplinkStream, Topic: "bench-edge", Partition: 0, Messages: msgs}}); err != nil {
			return err
		}
	}
	return nil
}

// waitNext waits, on the stream's change notifications, until the topic
// partition's next offset reaches n.
func waitNext(ctx context.Context, s *store.Stream, topic string, n uint64) error {
	for {
		ch := s.Changed()
		_, next, err := s.Bounds(ctx, topic, 0)
		if err != nil {
			return err
		}
		if next >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sideLatency collects the latency of shadow changes (edge to core) and
// updates (core to edge) sent during a catch-up.
type sideLatency struct {
	shadow, updates []time.Duration
}

// drain fills the edge's uplink with n messages while the link is down,
// then brings the link up and times the drain. With side set, it also
// times shadow changes and updates sent every 20 ms meanwhile.
func (b *benchEnv) drain(ctx context.Context, name string, n, size int, side *sideLatency) (msgsPerSec, mbps float64, _ *sideLatency, err error) {
	p, err := b.pair(name)
	if err != nil {
		return 0, 0, nil, err
	}
	defer p.close()
	fstart := time.Now()
	if err := fill(ctx, p.edge, n, size); err != nil {
		return 0, 0, nil, err
	}
	b.logf("  %d messages appended at the edge in %s", n, time.Since(fstart).Round(time.Millisecond))
	sctx, stopSide := context.WithCancel(ctx)
	sideDone := make(chan error, 2)
	if side != nil {
		go func() { sideDone <- sideShadows(sctx, p, side) }()
		go func() { sideDone <- sideUpdates(sctx, p, side) }()
	}
	start := time.Now()
	if err := p.link(b.edge); err != nil {
		stopSide()
		return 0, 0, nil, err
	}
	err = waitNext(ctx, p.core.Stream(store.UplinkStream), "bench-edge", uint64(n))
	el := time.Since(start)
	stopSide()
	if side != nil {
		for range 2 {
			if e := <-sideDone; e != nil && !errors.Is(e, context.Canceled) && err == nil {
				err = e
			}
		}
	}
	if err != nil {
		return 0, 0, nil, err
	}
	b.logf("  drained in %s", el.Round(time.Millisecond))
	return float64(n) / el.Seconds(), float64(n) * float64(size) / el.Seconds() / 1e6, side, nil
}

// sideShadows patches a shadow at the edge every 20 ms and times its
// change record's arrival at the core.
func sideShadows(ctx context.Context, p *benchPair, side *sideLatency) error {
	changes := p.core.Stream(store.ShadowChanges)
	return every20ms(ctx, &side.shadow, func(i int) (func() error, error) {
		doc, err := p.edge.Table(store.ShadowsTable).Patch(ctx, "bench-device", fmt.Appendf(nil, `{"reported":{"i":%d}}`, i))
		return func() error {
			_, err := changes.ReadWait(ctx, "bench-edge", 0, doc.Version-1, store.ReadOptions{Limit: 1})
			return err
		}, err
	})
}

// sideUpdates appends to the core's updates every 20 ms and times their
// arrival at the edge.
func sideUpdates(ctx context.Context, p *benchPair, side *sideLatency) error {
	down := p.edge.Stream(store.UpdatesStream)
	return every20ms(ctx, &side.updates, func(i int) (func() error, error) {
		pos, err := p.core.Stream(store.UpdatesStream).Append(ctx, "all", store.Message{Value: fmt.Appendf(nil, `{"i":%d}`, i)})
		return func() error {
			_, err := down.ReadWait(ctx, "all", 0, pos[0].Offset, store.ReadOptions{Limit: 1})
			return err
		}, err
	})
}

// every20ms sends a change every 20 ms until ctx ends and records, into
// lat, the time from each send to its arrival: send makes the change and
// returns what waits for it to arrive.
func every20ms(ctx context.Context, lat *[]time.Duration, send func(i int) (arrived func() error, err error)) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		wait, err := send(i)
		if err != nil {
			return err
		}
		sent := time.Now()
		if err := wait(); err != nil {
			return err
		}
		*lat = append(*lat, time.Since(sent))
	}
}

// steady appends rate messages a second at the edge for d and measures,
// at the core, how long after its append each message is readable there.
func (b *benchEnv) steady(ctx context.Context, rate int, d time.Duration) (float64, time.Duration, time.Duration, error) {
	p, err := b.pair("steady")
	if err != nil {
		return 0, 0, 0, err
	}
	defer p.close()
	if err := p.link(b.edge); err != nil {
		return 0, 0, 0, err
	}
	const tickEvery = time.Millisecond
	per := max(1, rate/1000)
	total := int(d / tickEvery * time.Duration(per))
	lags := make([]time.Duration, 0, total)
	readDone := make(chan error, 1)
	go func() {
		s := p.core.Stream(store.UplinkStream)
		for from := uint64(0); from < uint64(total); {
			msgs, err := s.ReadWait(ctx, "bench-edge", 0, from, store.ReadOptions{Limit: 10000})
			if err != nil {
				readDone <- err
				return
			}
			now := time.Now()
			for _, m := range msgs {
				lags = append(lags, now.Sub(m.Timestamp))
			}
			from = msgs[len(msgs)-1].Offset + 1
		}
		readDone <- nil
	}()
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	start := time.Now()
	for sent := 0; sent < total; {
		<-tick.C
		// Catch up on missed ticks so the rate holds.
		due := min(total, int(time.Since(start)/tickEvery+1)*per)
		if due <= sent {
			continue
		}
		msgs := make([]store.Message, 0, due-sent)
		for i := sent; i < due; i++ {
			msgs = append(msgs, store.Message{Value: payload(i, 200)})
		}
		if _, err := p.edge.AppendMany(ctx, []store.AppendRequest{{Path: store.UplinkStream, Topic: "bench-edge", Partition: 0, Messages: msgs}}); err != nil {
			return 0, 0, 0, err
		}
		sent = due
	}
	achieved := float64(total) / time.Since(start).Seconds()
	if err := <-readDone; err != nil {
		return 0, 0, 0, err
	}
	return achieved, percentile(lags, 50), percentile(lags, 99), nil
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
