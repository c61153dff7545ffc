package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/internal/plainmqtt"
	"github.com/weft-io/weft/sync/bench"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure parts of the fabric",
	}
	cmd.AddCommand(newBenchGatewayCmd(), newBenchSyncCmd())
	return cmd
}

func newBenchSyncCmd() *cobra.Command {
	var (
		cfg    bench.Config
		output string
	)
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Measure edge-to-core replication over QUIC on loopback",
		Long: `Run an edge's store and a core's store in this process, linked over QUIC on
loopback with the same TLS and QUIC settings as weft edge and weft core, and
report: the raw throughput of one quic-go stream (the baseline); the
replication rate of --small 200-byte and --large 64 KiB records piled up at
the edge; the lag of messages appended at --rate messages a second for
--duration (from the append at the edge to being readable at the core, p50
and p99); and the catch-up of --backlog messages appended while the link was
down, with the latency of shadow changes (edge to core) and updates (core to
edge) sent during it; the rate a link capped at --cap bytes a second
achieves; and the rate of a volume mirror of --mirror-bytes of files from
the core's /models to the edge. Stores live in --dir (default: a temporary
directory).`,
		Example: `  weft bench sync
  weft bench sync --small 200000 --large 2000 --backlog 500000 --duration 5s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == "text" {
				cfg.Progress = cmd.ErrOrStderr()
			}
			res, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				b, _ := json.Marshal(res)
				fmt.Fprintln(out, string(b))
				return nil
			}
			ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
			fmt.Fprintf(out, "raw quic-go, one stream     %8.1f MB/s\n", res.RawMBps)
			fmt.Fprintf(out, "replication, 200 B records  %8.0f msgs/s %8.1f MB/s\n", res.SmallMsgsPerSec, res.SmallMBps)
			fmt.Fprintf(out, "replication, 64 KiB records %8.0f msgs/s %8.1f MB/s (%.2fx raw QUIC)\n", res.LargeMsgsPerSec, res.LargeMBps, res.LargeMBps/res.RawMBps)
			fmt.Fprintf(out, "steady state at %.0f msgs/s  lag p50 %s, p99 %s\n", res.SteadyRate, ms(res.LagP50), ms(res.LagP99))
			fmt.Fprintf(out, "catch-up of %d messages  %s (%.0f msgs/s)\n", res.Backlog, res.CatchUp.Round(time.Millisecond), res.CatchUpMsgsPerSec)
			fmt.Fprintf(out, "  during it: shadow changes p50 %s p99 %s; updates p50 %s p99 %s\n", ms(res.ShadowP50), ms(res.ShadowP99), ms(res.UpdatesP50), ms(res.UpdatesP99))
			fmt.Fprintf(out, "capped at %.1f MB/s          %8.1f MB/s sent (%.1f%% of the cap)\n", float64(res.Cap)/1e6, res.CappedBytes/1e6, 100*res.CappedBytes/float64(res.Cap))
			fmt.Fprintf(out, "mirror of %d MiB of files    %8.1f MB/s\n", res.MirrorBytes>>20, res.MirrorMBps)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Dir, "dir", "", "directory for the stores (default: a temporary directory)")
	fl.Int64Var(&cfg.RawBytes, "raw-bytes", 1<<30, "bytes the raw QUIC baseline sends")
	fl.IntVar(&cfg.Small, "small", 1_000_000, "200-byte records replicated")
	fl.IntVar(&cfg.Large, "large", 8000, "64 KiB records replicated")
	fl.IntVar(&cfg.Rate, "rate", 20000, "messages a second of the steady-state run")
	fl.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the steady-state run")
	fl.IntVar(&cfg.Backlog, "backlog", 5_000_000, "messages backlogged before the catch-up run")
	fl.Int64Var(&cfg.Cap, "cap", 10_000_000, "bandwidth cap of the capped run, bytes a second")
	fl.Int64Var(&cfg.MirrorBytes, "mirror-bytes", 256<<20, "bytes of files the mirror run carries down")
	fl.StringVarP(&output, "output", "o", "text", "output: text or json")
	return cmd
}

func newBenchGatewayCmd() *cobra.Command {
	var (
		cfg      device.BenchConfig
		qos      int
		ips      string
		baseline bool
		output   string
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Load a device gateway with many mTLS MQTT devices",
		Long: `Connect --conns devices to the gateway at --addr over mutual-TLS MQTT 5
(paho.golang), have each publish --msgs messages of --size bytes at --qos with
--window in flight (at a fixed --rate over all devices, if given), and report the connect rate, acknowledged messages per
second, the publish latency (p50, p99) and the CPU time per acknowledged
message of this process (the clients) and, with --pid, of the gateway's. Device certificates come from
--certs/devices, and are issued there when --certs holds the device CA key.

--baseline first runs the same load against a plain mochi-mqtt broker started
in this process (TLS, no hooks, no ACL, no persistence), to compare.
--hold keeps the connections open and, with --pid, reports the gateway
process's RSS per connection; --source-ips spreads connections over several
loopback addresses (a range like 127.0.0.2-127.0.0.21) for more than 60k.`,
		Example: `  weft bench gateway --addr 127.0.0.1:8883 --certs C --conns 100 --msgs 2000 --qos 1 --size 200 --baseline
  weft bench gateway --addr 127.0.0.1:8883 --certs C --conns 100 --msgs 500 --qos 1 --rate 5000 --baseline
  weft bench gateway --addr 127.0.0.1:8883 --certs C --conns 20000 --msgs 0 --hold 10s --pid $(pidof weft) --source-ips 127.0.0.2-127.0.0.11`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if qos < 0 || qos > 2 {
				return fmt.Errorf("--qos must be 0, 1 or 2")
			}
			cfg.QoS = byte(qos)
			var err error
			if cfg.LocalAddrs, err = ipRange(ips); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var base *device.BenchResult
			if baseline {
				c := startCPU(0)
				b, err := runBaseline(cmd, cfg)
				if err != nil {
					return fmt.Errorf("baseline: %w", err)
				}
				base = &b
				printBench(out, output, "plain mochi-mqtt", b, nil, c.stop(b.Acked, "clients and broker"))
			}
			c := startCPU(cfg.PID)
			res, err := device.Bench(cmd.Context(), cfg)
			printBench(out, output, "gateway "+cfg.Dial.Addr, res, base, c.stop(res.Acked, "clients"))
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Dial.Addr, "addr", "127.0.0.1:8883", "gateway address")
	fl.StringVar(&cfg.Dial.ServerName, "server-name", "", "name the gateway certificate must carry (default: the host of --addr)")
	fl.StringVar(&cfg.CertsDir, "certs", "", "certificate directory (required)")
	fl.IntVar(&cfg.Conns, "conns", 100, "devices connected at once")
	fl.IntVar(&cfg.Msgs, "msgs", 1000, "messages per device")
	fl.IntVar(&qos, "qos", 1, "QoS of the publishes")
	fl.IntVar(&cfg.Size, "size", 200, "payload size in bytes")
	fl.Float64Var(&cfg.Rate, "rate", 0, "offered messages per second over all devices, each sent on schedule and its latency counted from when it was due (0: as fast as acknowledged)")
	fl.IntVar(&cfg.Window, "window", 1, "publishes in flight per device (1: the typical device, which waits for each PUBACK)")
	fl.StringVar(&cfg.IDPrefix, "id-prefix", "bench", "prefix of the bench devices' ids")
	fl.StringVar(&ips, "source-ips", "", "local addresses to connect from: a list or a range 127.0.0.2-127.0.0.21")
	fl.DurationVar(&cfg.Hold, "hold", 0, "keep the connections open this long before reporting")
	fl.IntVar(&cfg.PID, "pid", 0, "gateway process to sample the CPU time of, and the RSS of (with --hold)")
	fl.BoolVar(&baseline, "baseline", false, "also run the load against a plain mochi-mqtt broker")
	fl.StringVarP(&output, "output", "o", "text", "output: text or json")
	cmd.MarkFlagRequired("certs")
	return cmd
}

// runBaseline runs cfg against a plain mochi broker on loopback, with a
// gateway certificate named bench-baseline from the certificate directory.
func runBaseline(cmd *cobra.Command, cfg device.BenchConfig) (device.BenchResult, error) {
	auth, err := certs.Load(cfg.CertsDir)
	if err != nil {
		return device.BenchResult{}, err
	}
	cf, kf := certs.Files(cfg.CertsDir, certs.KindGateway, "bench-baseline")
	cert, err := tls.LoadX509KeyPair(cf, kf)
	if errors.Is(err, fs.ErrNotExist) {
		iss, ierr := auth.IssueGateway("bench-baseline", []string{"127.0.0.1", "localhost"}, 0)
		if ierr != nil {
			return device.BenchResult{}, ierr
		}
		if _, _, ierr = auth.Save(iss); ierr != nil {
			return device.BenchResult{}, ierr
		}
		cert, err = tls.X509KeyPair(iss.CertPEM, iss.KeyPEM)
	}
	if err != nil {
		return device.BenchResult{}, err
	}
	pool, err := certs.Pool(auth.DeviceCA.PEM)
	if err != nil {
		return device.BenchResult{}, err
	}
	b, err := plainmqtt.Start("127.0.0.1:0", cert, pool)
	if err != nil {
		return device.BenchResult{}, err
	}
	defer b.Close()
	cfg.Dial.Addr, cfg.Dial.ServerName, cfg.Hold, cfg.PID = b.Addr().String(), "127.0.0.1", 0, 0
	return device.Bench(cmd.Context(), cfg)
}

func printBench(w io.Writer, format, what string, r device.BenchResult, base *device.BenchResult, cpu cpuUse) {
	if format == "json" {
		b, _ := json.Marshal(map[string]any{"target": what, "result": r, "cpu": cpu})
		fmt.Fprintln(w, string(b))
		return
	}
	fmt.Fprintf(w, "%s\n", what)
	fmt.Fprintf(w, "  connections   %d in %s (%.0f/s)\n", r.Conns, r.ConnectTime.Round(time.Millisecond), r.ConnectRate)
	if r.Acked+r.Failed > 0 {
		fmt.Fprintf(w, "  acknowledged  %d msgs in %s: %.0f msgs/s, %.2f MB/s", r.Acked, r.PublishTime.Round(time.Millisecond), r.MsgsPerSec, r.MBPerSec)
		if base != nil && base.MsgsPerSec > 0 {
			fmt.Fprintf(w, " (%.2fx plain mochi)", r.MsgsPerSec/base.MsgsPerSec)
		}
		fmt.Fprintf(w, "\n  latency       p50 %s, p99 %s\n", r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	}
	if cpu.SelfPerMsg > 0 {
		fmt.Fprintf(w, "  cpu           %.1f µs/msg in this process (%s)", cpu.SelfPerMsg, cpu.Self)
		if cpu.PID > 0 {
			fmt.Fprintf(w, ", %.1f µs/msg in the gateway (pid %d)", cpu.GatewayPerMsg, cpu.PID)
		}
		fmt.Fprintln(w)
	}
	if r.Failed > 0 {
		fmt.Fprintf(w, "  failed        %d (%s)\n", r.Failed, r.FirstFailure)
	}
	if r.RSSHolding > 0 {
		fmt.Fprintf(w, "  gateway RSS   %d MiB before, %d MiB holding: %d KiB per connection\n", r.RSSBefore>>20, r.RSSHolding>>20, r.RSSPerConn>>10)
	}
}

// ipRange parses "a,b,c" or "first-last" (IPv4, last octet varying).
func ipRange(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, b := net.ParseIP(first).To4(), net.ParseIP(last).To4()
		if a == nil || b == nil || a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || a[3] > b[3] {
			return nil, fmt.Errorf("--source-ips: %q is not a range like 127.0.0.2-127.0.0.21", s)
		}
		var out []string
		for i := int(a[3]); i <= int(b[3]); i++ {
			out = append(out, net.IPv4(a[0], a[1], a[2], byte(i)).String())
		}
		return out, nil
	}
	out := strings.Split(s, ",")
	for _, ip := range out {
		if net.ParseIP(ip) == nil {
			return nil, fmt.Errorf("--source-ips: %q is not an IP address", ip)
		}
	}
	return out, nil
}

// cpuUse is the CPU time (user and system) a run used per acknowledged
// message: in this process (the clients, and the broker of the baseline)
// and, with --pid, in the gateway's process. Connection handshakes are
// included.
type cpuUse struct {
	Self          string  `json:"self"`
	SelfPerMsg    float64 `json:"self_us_per_msg"`
	PID           int     `json:"pid,omitempty"`
	GatewayPerMsg float64 `json:"gateway_us_per_msg,omitempty"`
}

type cpuStart struct {
	pid         int
	self, other time.Duration
	ok          bool
}

func startCPU(pid int) cpuStart {
	c := cpuStart{pid: pid, self: selfCPU()}
	if pid > 0 {
		c.other, c.ok = procCPU(pid)
	}
	return c
}

func (c cpuStart) stop(acked int64, self string) cpuUse {
	if acked <= 0 {
		return cpuUse{}
	}
	u := cpuUse{Self: self, SelfPerMsg: float64((selfCPU() - c.self).Microseconds()) / float64(acked)}
	if other, ok := procCPU(c.pid); ok && c.ok {
		u.PID, u.GatewayPerMsg = c.pid, float64((other-c.other).Microseconds())/float64(acked)
	}
	return u
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU reads a process's user and system time from /proc/<pid>/stat
// (Linux, clock ticks of 1/100 s).
func procCPU(pid int) (time.Duration, bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis (utime and stime are fields 14, 15).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}
