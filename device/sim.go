package device

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/firmware"
)

// Class describes a simulated device class: its telemetry channels, each
// with a base value, a daily swing and noise, and the valid setpoint range.
type Class struct {
	Name     string
	Channels []Channel
	// Setpoint range a device accepts from its desired state.
	SetpointMin, SetpointMax float64
	DefaultSetpoint          float64
}

// Channel is one telemetry value of a class.
type Channel struct {
	Name        string
	Base, Swing float64 // daily sine around Base
	Noise       float64 // standard deviation
}

// Classes are the simulated fleet's device classes.
var Classes = []Class{
	{Name: "pump", SetpointMin: 1, SetpointMax: 10, DefaultSetpoint: 4, Channels: []Channel{
		{"pressure_bar", 4, 0.5, 0.05}, {"flow_lpm", 120, 30, 2}, {"temperature_c", 45, 5, 0.3}}},
	{Name: "chiller", SetpointMin: -10, SetpointMax: 15, DefaultSetpoint: 6, Channels: []Channel{
		{"supply_c", 6, 1, 0.1}, {"return_c", 12, 2, 0.2}, {"power_kw", 30, 10, 0.5}}},
	{Name: "meter", SetpointMin: 0, SetpointMax: 1000, DefaultSetpoint: 500, Channels: []Channel{
		{"voltage_v", 230, 3, 0.5}, {"current_a", 15, 8, 0.4}, {"frequency_hz", 50, 0.02, 0.01}}},
}

// SimConfig describes a simulated fleet.
type SimConfig struct {
	Dial DialConfig
	// CertsDir holds the device CA and the devices' certificates (issued
	// there when it holds the CA key).
	CertsDir string
	// Count of devices, spread over Classes in turn. Default 10.
	Count int
	// Classes are the device classes of the fleet, taken in turn. Default
	// the package's Classes.
	Classes []Class
	// IDPrefix of the device ids: <prefix>-<class>-<n>. Default "sim".
	IDPrefix string
	// Interval between telemetry samples until a device is told
	// otherwise (desired sample_interval_s). Default 5 s.
	Interval time.Duration
	// AnomalyRate is the chance per sample that an anomaly starts: a few
	// samples far off the normal band. Default 0.002.
	AnomalyRate float64
	// ApplyDelay is how long a device takes to apply a desired change
	// before it reports it. Default 300 ms.
	ApplyDelay time.Duration
	// RebootPause is how long a device stays away after answering a
	// reboot command. Default 1 s.
	RebootPause time.Duration
	// Firmware, when its Keys hold a key, runs a firmware agent (Agent) in
	// every device. Zero: devices report firmware 1.0.0 and ignore
	// releases.
	Firmware SimFirmware
	// Logger receives the fleet's logs. Nil discards them.
	Logger *slog.Logger
}

// SimFirmware is the firmware side of a simulated fleet: every device
// runs an Agent that pins Keys, fetches images from Source, keeps only
// their digests (AgentConfig.DigestOnly), and commits or rolls back.
type SimFirmware struct {
	// Keys is the key set each device pins on its first start.
	Keys firmware.KeySet
	// Dir holds each device's agent state, in Dir/<id>. Required with
	// Keys.
	Dir string
	// Version is the version a device runs on its first start. Default
	// 1.0.0.
	Version firmware.Version
	// Source, if set, fetches releases for every device (an HTTPSource on
	// the edge's API with a token).
	Source Source
	// HTTPS, when Source is nil, is the base URL of the edge's device
	// firmware listener (api.DeviceFirmware): each device fetches there
	// over HTTPS with its own certificate, its only credential. With
	// neither, each device fetches over its own MQTT connection in chunks
	// (MQTTSource) from the edge's chunk server (firmware.ChunkServer).
	HTTPS string
	// FailRate is the fraction of devices whose new images fail their
	// health check (and roll back): a device fails when a hash of its id,
	// read as a fraction of 1, is below FailRate, so the same devices fail
	// on every run. Default 0.
	FailRate float64
}

// Fails reports whether device id's new images fail their health check
// under FailRate.
func (c SimFirmware) Fails(id string) bool {
	h := sha256.Sum256([]byte(id))
	return float64(binary.BigEndian.Uint64(h[:])>>11)/(1<<53) < c.FailRate
}

// Fleet is a running simulated fleet.
type Fleet struct {
	cfg     SimConfig
	log     *slog.Logger
	mu      sync.Mutex
	online  map[string]bool
	ids     []string
	stopped chan struct{}
}

// IDs are the fleet's device ids.
func (f *Fleet) IDs() []string { return f.ids }

// Online is the number of devices connected right now.
func (f *Fleet) Online() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, on := range f.online {
		if on {
			n++
		}
	}
	return n
}

// Done is closed when every device has stopped.
func (f *Fleet) Done() <-chan struct{} { return f.stopped }

// StartFleet connects the fleet and runs it until ctx ends. Devices that
// lose their connection reconnect with backoff; their sessions are
// persistent, so they get the updates they missed.
func StartFleet(ctx context.Context, cfg SimConfig) (*Fleet, error) {
	if cfg.Count <= 0 {
		cfg.Count = 10
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = "sim"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.AnomalyRate == 0 {
		cfg.AnomalyRate = 0.002
	}
	if cfg.ApplyDelay == 0 {
		cfg.ApplyDelay = 300 * time.Millisecond
	}
	if cfg.RebootPause <= 0 {
		cfg.RebootPause = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(cfg.Classes) == 0 {
		cfg.Classes = Classes
	}
	classes := cfg.Classes
	f := &Fleet{cfg: cfg, log: cfg.Logger.With("component", "fleet"), online: map[string]bool{}, stopped: make(chan struct{})}
	byClass := map[string][]int{}
	for i := 0; i < cfg.Count; i++ {
		c := classes[i%len(classes)]
		f.ids = append(f.ids, fmt.Sprintf("%s-%s-%d", cfg.IDPrefix, c.Name, i/len(classes)))
		byClass[c.Name] = append(byClass[c.Name], i)
	}
	creds := make([]tls.Certificate, len(f.ids))
	for _, c := range classes {
		idx := byClass[c.Name]
		if len(idx) == 0 {
			continue
		}
		ids := make([]string, len(idx))
		for j, i := range idx {
			ids[j] = f.ids[i]
		}
		cs, pool, err := Credentials(cfg.CertsDir, ids, c.Name)
		if err != nil {
			return nil, err
		}
		if f.cfg.Dial.Roots == nil {
			f.cfg.Dial.Roots = pool
		}
		for j, i := range idx {
			creds[i] = cs[j]
		}
	}
	var wg sync.WaitGroup
	for i, id := range f.ids {
		d := &simDevice{f: f, id: id, class: classes[i%len(classes)], cert: creds[i], rng: rand.New(rand.NewPCG(uint64(i), 7))}
		if len(cfg.Firmware.Keys.Keys) > 0 {
			if err := d.startAgent(ctx, &wg); err != nil {
				return nil, err
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stagger the connects over the first interval.
			select {
			case <-time.After(time.Duration(i) * time.Second / time.Duration(max(50, cfg.Count/10))):
			case <-ctx.Done():
				return
			}
			d.run(ctx)
		}()
	}
	go func() { wg.Wait(); close(f.stopped) }()
	return f, nil
}

// simDevice is one simulated device: telemetry, desired-state handling,
// commands.
type simDevice struct {
	f     *Fleet
	id    string
	class Class
	cert  tls.Certificate
	rng   *rand.Rand

	mu       sync.Mutex
	interval time.Duration
	setpoint float64
	anomaly  int // samples of anomaly left
	changed  chan struct{}

	// The firmware agent, when the fleet runs one: its messages, the
	// connection it publishes on, the version it runs, the source of the
	// current session when it fetches over MQTT.
	agent     *Agent
	fwMsgs    chan *paho.Publish
	conn      *paho.Client // guarded by mu
	chunks    *MQTTSource  // guarded by mu
	running   string       // guarded by mu
	connected chan struct{}
	once      sync.Once
}

// startAgent makes the device's firmware agent and runs it until ctx
// ends: it finishes an update a restart interrupted once the device is
// first connected, then acts on each firmware message in turn, apart
// from the session so that a download does not hold up telemetry.
func (d *simDevice) startAgent(ctx context.Context, wg *sync.WaitGroup) error {
	fc := d.f.cfg.Firmware
	if fc.Dir == "" {
		return errors.New("device: a fleet running firmware agents needs Firmware.Dir")
	}
	ver := fc.Version
	if ver.IsZero() {
		ver = firmware.Version{Major: 1}
	}
	cfg := AgentConfig{ID: d.id, Class: d.class.Name, Dir: filepath.Join(fc.Dir, d.id), Keys: fc.Keys, Version: ver,
		Source: fc.Source, DigestOnly: true, Publish: d.publish, Logger: d.f.cfg.Logger}
	switch {
	case cfg.Source != nil:
	case fc.HTTPS != "":
		cfg.Source = &HTTPSource{Base: fc.HTTPS, Client: &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: d.f.cfg.Dial.Roots, Certificates: []tls.Certificate{d.cert}},
			IdleConnTimeout: 30 * time.Second,
		}}}
	default:
		cfg.Source = sessionSource{d}
	}
	if fc.Fails(d.id) {
		cfg.Health = func(context.Context, string, firmware.Manifest) error {
			return errors.New("simulated failure: the new image does not come up")
		}
	}
	a, err := NewAgent(cfg)
	if err != nil {
		return err
	}
	d.agent, d.fwMsgs, d.connected, d.running = a, make(chan *paho.Publish, 16), make(chan struct{}), a.Version().String()
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-d.connected:
		case <-ctx.Done():
			return
		}
		d.agent.Boot(ctx)
		d.setRunning()
		for {
			select {
			case <-ctx.Done():
				return
			case p := <-d.fwMsgs:
				d.agent.Handle(ctx, p.Topic, p.Payload)
				d.setRunning()
			}
		}
	}()
	return nil
}

func (d *simDevice) setRunning() {
	v := d.agent.Version().String()
	d.mu.Lock()
	d.running = v
	d.mu.Unlock()
}

// publish sends an agent's message on the current connection.
func (d *simDevice) publish(ctx context.Context, topic string, payload []byte) error {
	d.mu.Lock()
	c := d.conn
	d.mu.Unlock()
	if c == nil {
		return errors.New("device: not connected")
	}
	_, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	return err
}

// sessionSource fetches over the current session's MQTT connection.
type sessionSource struct{ d *simDevice }

func (s sessionSource) src() (*MQTTSource, error) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.d.chunks == nil {
		return nil, errors.New("device: not connected")
	}
	return s.d.chunks, nil
}

func (s sessionSource) Manifest(ctx context.Context, name string, v firmware.Version) ([]byte, error) {
	src, err := s.src()
	if err != nil {
		return nil, err
	}
	return src.Manifest(ctx, name, v)
}

func (s sessionSource) Image(ctx context.Context, name string, v firmware.Version, off int64, w io.Writer) error {
	src, err := s.src()
	if err != nil {
		return err
	}
	return src.Image(ctx, name, v, off, w)
}

func (d *simDevice) setOnline(on bool) {
	d.f.mu.Lock()
	d.f.online[d.id] = on
	d.f.mu.Unlock()
}

func (d *simDevice) run(ctx context.Context) {
	d.interval, d.setpoint, d.changed = d.f.cfg.Interval, d.class.DefaultSetpoint, make(chan struct{}, 1)
	backoff := time.Second
	for ctx.Err() == nil {
		err := d.session(ctx)
		d.setOnline(false)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errReboot) {
			d.f.log.Debug("device rebooting", "device", d.id)
			select {
			case <-time.After(d.f.cfg.RebootPause):
			case <-ctx.Done():
				return
			}
			backoff = time.Second
			continue
		}
		d.f.log.Debug("device disconnected", "device", d.id, "err", err)
		select {
		case <-time.After(backoff + time.Duration(d.rng.Int64N(int64(backoff)))):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// session is one connection: subscribe, report state, publish telemetry
// until the connection or ctx ends.
func (d *simDevice) session(ctx context.Context) error {
	deltas := make(chan []byte, 16)
	commands := make(chan *paho.Publish, 64)
	cmdPrefix := "updates/device/" + d.id + "/commands/"
	var chunks *MQTTSource
	if d.agent != nil && d.f.cfg.Firmware.Source == nil && d.f.cfg.Firmware.HTTPS == "" {
		chunks = &MQTTSource{ID: d.id, Publish: d.publish}
	}
	c, err := Connect(ctx, d.f.cfg.Dial, d.id, d.cert, false, func(p paho.PublishReceived) (bool, error) {
		switch t := p.Packet.Topic; {
		case chunks != nil && chunks.Deliver(p.Packet):
		case d.agent != nil && d.agent.isFirmware(t):
			select {
			case d.fwMsgs <- p.Packet:
			default:
				d.f.log.Warn("firmware message dropped: agent busy", "device", d.id, "topic", t)
			}
		case strings.HasPrefix(t, cmdPrefix):
			select {
			case commands <- p.Packet:
			default:
			}
		case strings.HasSuffix(t, "/shadow/delta") || strings.HasSuffix(t, "/config"):
			select {
			case deltas <- p.Packet.Payload:
			default:
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	defer c.Disconnect(&paho.Disconnect{})
	// updates/device/<id>/# takes in the commands,
	// updates/device/<id>/commands/<name>/<request-id>: a filter of their
	// own beside it would have each delivered twice.
	_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "updates/all/#", QoS: 1},
		{Topic: "updates/class/" + d.class.Name + "/#", QoS: 1},
		{Topic: "updates/device/" + d.id + "/#", QoS: 1},
	}})
	if err != nil {
		return err
	}
	d.setOnline(true)
	if d.agent != nil {
		d.mu.Lock()
		d.conn, d.chunks = c, chunks
		d.mu.Unlock()
		defer func() {
			d.mu.Lock()
			d.conn, d.chunks = nil, nil
			d.mu.Unlock()
		}()
		d.once.Do(func() { close(d.connected) })
		// A status lost with the previous connection reaches the rollout.
		if err := d.agent.ReportAgain(ctx); err != nil {
			return err
		}
	}
	if err := d.report(ctx, c, nil); err != nil {
		return err
	}
	for {
		d.mu.Lock()
		interval := d.interval
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
			return fmt.Errorf("device %s: connection lost", d.id)
		case p := <-commands:
			a, ok := answerCommand(d.id, p.Topic, time.Now())
			if !ok {
				continue
			}
			ans := &paho.Publish{Topic: a.topic, QoS: 1, Payload: a.body}
			if p.Properties != nil && p.Properties.CorrelationData != nil {
				ans.Properties = &paho.PublishProperties{CorrelationData: p.Properties.CorrelationData}
			}
			if _, err := c.Publish(ctx, ans); err != nil {
				return err
			}
			if a.reboot {
				return errReboot
			}
		case delta := <-deltas:
			errs := d.apply(delta)
			select {
			case <-time.After(d.f.cfg.ApplyDelay):
			case <-ctx.Done():
				return nil
			}
			if err := d.report(ctx, c, errs); err != nil {
				return err
			}
		case <-time.After(interval):
			if err := d.sample(ctx, c); err != nil {
				return err
			}
		}
	}
}

// errReboot ends a session whose device answered a reboot command.
var errReboot = errors.New("device: rebooting")

// commandAnswer is a simulated device's answer to a command.
type commandAnswer struct {
	topic  string // devices/<id>/commands/<request-id>/response
	body   []byte
	reboot bool // disconnect once answered, come back after a pause
}

// answerCommand returns how device id answers the command delivered on
// topic (updates/device/<id>/commands/<name>/<request-id>) at now: ping
// with {"pong": true, "at": now}, reboot with {"rebooting": true} (and
// a reboot), any other name with an error. False when topic is no
// command to id.
func answerCommand(id, topic string, now time.Time) (commandAnswer, bool) {
	rest, ok := strings.CutPrefix(topic, "updates/device/"+id+"/commands/")
	if !ok {
		return commandAnswer{}, false
	}
	name, rid, ok := strings.Cut(rest, "/")
	if !ok || name == "" || rid == "" || strings.Contains(rid, "/") {
		return commandAnswer{}, false
	}
	a := commandAnswer{topic: "devices/" + id + "/commands/" + rid + "/response"}
	var body map[string]any
	switch name {
	case "ping":
		body = map[string]any{"pong": true, "at": now.UTC().Format(time.RFC3339Nano)}
	case "reboot":
		body, a.reboot = map[string]any{"rebooting": true}, true
	default:
		body = map[string]any{"error": "unknown command " + name}
	}
	a.body, _ = json.Marshal(body)
	return a, true
}

// apply takes the fields of a desired-state delta it understands and
// returns what it rejects, by field.
func (d *simDevice) apply(delta []byte) map[string]string {
	var fields map[string]any
	if err := json.Unmarshal(delta, &fields); err != nil {
		return map[string]string{"delta": "not a JSON object"}
	}
	errs := map[string]string{}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, v := range fields {
		n, isNum := v.(float64)
		switch k {
		case "sample_interval_s":
			if !isNum || n < 1 || n > 3600 {
				errs[k] = fmt.Sprintf("%v is not a number of seconds in 1..3600", v)
				continue
			}
			d.interval = time.Duration(n * float64(time.Second))
		case "setpoint":
			if !isNum || n < d.class.SetpointMin || n > d.class.SetpointMax {
				errs[k] = fmt.Sprintf("%v is outside %g..%g", v, d.class.SetpointMin, d.class.SetpointMax)
				continue
			}
			d.setpoint = n
		}
	}
	return errs
}

// report publishes the device's state to its shadow: what it runs with,
// and the errors of the last desired change (null when none).
func (d *simDevice) report(ctx context.Context, c *paho.Client, errs map[string]string) error {
	d.mu.Lock()
	state := map[string]any{
		"sample_interval_s": d.interval.Seconds(),
		"setpoint":          d.setpoint,
		"firmware":          cmp.Or(d.running, "1.0.0"),
		"error":             nil,
	}
	d.mu.Unlock()
	if len(errs) > 0 {
		state["error"] = errs
	}
	b, _ := json.Marshal(state)
	_, err := c.Publish(ctx, &paho.Publish{Topic: "devices/" + d.id + "/shadow/reported", QoS: 1, Payload: b})
	return err
}

// sample publishes one telemetry reading: each channel on its daily curve
// with noise, and now and then an anomaly.
func (d *simDevice) sample(ctx context.Context, c *paho.Client) error {
	now := time.Now()
	day := float64(now.Unix()%86400) / 86400 * 2 * math.Pi
	d.mu.Lock()
	if d.anomaly == 0 && d.rng.Float64() < d.f.cfg.AnomalyRate {
		d.anomaly = 3 + d.rng.IntN(5)
	}
	anomalous := d.anomaly > 0
	if anomalous {
		d.anomaly--
	}
	d.mu.Unlock()
	reading := map[string]any{"ts": now.UTC().Format(time.RFC3339Nano)}
	for _, ch := range d.class.Channels {
		v := ch.Base + ch.Swing*math.Sin(day) + d.rng.NormFloat64()*ch.Noise
		if anomalous {
			v += (4 + 4*d.rng.Float64()) * math.Max(ch.Swing, ch.Base*0.1)
		}
		reading[ch.Name] = math.Round(v*1000) / 1000
	}
	b, _ := json.Marshal(reading)
	_, err := c.Publish(ctx, &paho.Publish{Topic: "devices/" + d.id + "/telemetry", QoS: 1, Payload: b})
	return err
}
