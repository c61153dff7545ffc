// Package up runs the whole fabric on one machine, for a first look and for
// demonstrations: certificates under the data directory, a core node, an
// edge node with its device gateway linked to the core over QUIC, and a
// simulated fleet of devices over real mTLS MQTT, each running the
// firmware agent with a demo signing key pinned. `weft up` builds a
// Config and calls Run; starting again on the same directory resumes with
// the same data.
package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/sync/link"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/wire"
)

// Names of the nodes `weft up` runs.
const (
	CoreName = "core"
	EdgeName = "edge-1"
)

// Config configures a one-machine fabric. The zero value works.
type Config struct {
	// DataDir holds certificates, the nodes' stores and admin.token.
	// Default ./weft-data.
	DataDir string
	// Devices is the size of the simulated fleet. Default 50.
	Devices int
	// HTTPAddr is the core's HTTP address: console and API. Default
	// 127.0.0.1:8080.
	HTTPAddr string
	// MQTTAddr is the edge gateway's address. Default 127.0.0.1:8883.
	MQTTAddr string
	// Interval between a simulated device's samples. Default 5 s.
	Interval time.Duration
	// MirrorInterval is how often the edge asks the core for news of the
	// models and firmware volumes it mirrors. Default that of package
	// sync/mirror.
	MirrorInterval time.Duration
	// FirmwareFail is the fraction of simulated devices whose new
	// firmware fails its health check (and rolls back), so that a rollout
	// can be seen to halt (device.SimFirmware.FailRate). Default 0.
	FirmwareFail float64
	// Out receives the addresses to use (console URL, sign-in link).
	// Nil discards.
	Out io.Writer
	// Logger receives the nodes' logs. Nil discards them.
	Logger *slog.Logger
}

// Fabric is a running one-machine fabric.
type Fabric struct {
	Core  *core.Node
	Edge  *edge.Node
	Fleet *device.Fleet
	// Token is an admin API token, also written to DataDir/admin.token.
	Token string
	// FirmwareKey is the demo firmware signing key (DemoKeyDir), and
	// FirmwareKeyID its id.
	FirmwareKey   string
	FirmwareKeyID string

	// DeviceFirmwareAddr is the edge's HTTPS listener serving devices
	// their firmware by their certificates (edge.Config.FirmwareAddr).
	DeviceFirmwareAddr net.Addr
}

// DemoKeyDir is where, under the data directory, `weft up` keeps its demo
// firmware signing key: apart from the nodes' directories and from the
// certificates, as an offline key would be. The core trusts its public
// half (certs/firmware-keys.json) and the simulated devices pin it.
const DemoKeyDir = "firmware-demo-key"

// FleetDir is where, under the data directory, the simulated devices keep
// their firmware agents' state.
const FleetDir = "fleet"

// Start sets up certificates on first start, then starts the core, the
// edge linked to it, and the fleet.
func Start(ctx context.Context, cfg Config) (*Fabric, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "weft-data"
	}
	if cfg.Devices == 0 {
		cfg.Devices = 50
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = "127.0.0.1:8883"
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FirmwareFail < 0 || cfg.FirmwareFail > 1 {
		return nil, fmt.Errorf("up: firmware fail rate %g outside 0..1", cfg.FirmwareFail)
	}
	certsDir := filepath.Join(cfg.DataDir, "certs")
	auth, err := setupCerts(certsDir)
	if err != nil {
		return nil, err
	}
	keyPath, keys, err := setupFirmwareKey(cfg.DataDir, certsDir)
	if err != nil {
		return nil, err
	}
	token, err := certs.IssueToken(auth.TokenKey, certs.TokenClaims{Subject: "weft-up-admin", Role: certs.RoleAdmin}, 30*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "admin.token"), []byte(token+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}

	f := &Fabric{Token: token, FirmwareKey: keyPath, FirmwareKeyID: keys.Keys[0].ID}
	f.Core, err = core.Start(ctx, core.Config{
		DataDir: filepath.Join(cfg.DataDir, CoreName), CertsDir: certsDir, Name: CoreName,
		Listen: "127.0.0.1:0", HTTPAddr: cfg.HTTPAddr, Logger: cfg.Logger.With("node", CoreName),
	})
	if err != nil {
		return nil, err
	}
	f.Edge, err = edge.Start(ctx, edge.Config{
		DataDir: filepath.Join(cfg.DataDir, EdgeName), CertsDir: certsDir, Name: EdgeName,
		MQTTAddr: cfg.MQTTAddr, HTTPAddr: "127.0.0.1:0", Core: f.Core.SyncAddr().String(),
		Replicate: []string{"/telemetry/by_device"}, Logger: cfg.Logger.With("node", EdgeName),
		Mirrors: []mirror.Spec{{Volume: "models", Dir: wire.Down}, {Volume: "firmware", Dir: wire.Down}},
		Link:    link.ClientConfig{MirrorInterval: cfg.MirrorInterval},
		// The simulated devices report every few seconds: an epoch of 60
		// readings makes their anomaly scores start within minutes.
		Anomaly: anomaly.Config{Epoch: 60},
		// Devices fetch firmware over HTTPS with their certificates, or in
		// MQTT chunks (weft firmware agent without --api).
		FirmwareAddr: "127.0.0.1:0", FirmwareChunks: true,
	})
	if err != nil {
		f.Core.Shutdown(context.WithoutCancel(ctx))
		return nil, err
	}
	f.DeviceFirmwareAddr = f.Edge.FirmwareAddr()
	f.Fleet, err = device.StartFleet(ctx, device.SimConfig{
		Dial: device.DialConfig{Addr: f.Edge.MQTTAddr().String()}, CertsDir: certsDir,
		Count: cfg.Devices, Interval: cfg.Interval, Logger: cfg.Logger,
		Firmware: device.SimFirmware{Keys: keys, Dir: filepath.Join(cfg.DataDir, FleetDir), FailRate: cfg.FirmwareFail,
			HTTPS: "https://" + f.DeviceFirmwareAddr.String()},
	})
	if err != nil {
		f.Shutdown(context.WithoutCancel(ctx))
		return nil, err
	}
	return f, nil
}

// setupCerts makes the certificate directory on first start and the
// certificates of the nodes that are missing.
func setupCerts(dir string) (*certs.Authority, error) {
	if _, err := os.Stat(filepath.Join(dir, "device-ca.crt")); errors.Is(err, os.ErrNotExist) {
		if err := certs.Init(dir, false); err != nil {
			return nil, err
		}
	}
	auth, err := certs.Load(dir)
	if err != nil {
		return nil, err
	}
	hosts := []string{"127.0.0.1", "localhost"}
	for _, err := range []error{
		auth.EnsureNode(certs.CoreNode, CoreName, hosts),
		auth.EnsureNode(certs.EdgeNode, EdgeName, hosts),
		auth.EnsureGateway(EdgeName, hosts),
	} {
		if err != nil {
			return nil, err
		}
	}
	return auth, nil
}

// setupFirmwareKey makes the demo firmware signing key on first start
// (DataDir/firmware-demo-key) and, when the core has no trusted keys yet,
// writes them (certs/firmware-keys.json) with the demo key's public half.
// It returns the key's path and the key set the devices pin: the core's.
func setupFirmwareKey(dataDir, certsDir string) (string, firmware.KeySet, error) {
	dir := filepath.Join(dataDir, DemoKeyDir)
	keyPath := filepath.Join(dir, firmware.PrivateKeyFile)
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		priv, err := firmware.GenerateKey()
		if err != nil {
			return "", firmware.KeySet{}, err
		}
		if _, err := firmware.WriteKeyPair(dir, priv); err != nil {
			return "", firmware.KeySet{}, err
		}
	}
	pub, err := firmware.ReadPublicKey(filepath.Join(dir, firmware.PublicKeyFile))
	if err != nil {
		return "", firmware.KeySet{}, err
	}
	setPath := filepath.Join(certsDir, "firmware-keys.json")
	if _, err := os.Stat(setPath); errors.Is(err, os.ErrNotExist) {
		if err := firmware.WriteKeySet(setPath, firmware.KeySet{Version: 1, Threshold: 1, Keys: []firmware.Key{pub}}); err != nil {
			return "", firmware.KeySet{}, err
		}
	}
	set, err := firmware.ReadKeySet(setPath)
	if err != nil {
		return "", firmware.KeySet{}, err
	}
	return keyPath, set, nil
}

// Shutdown stops the edge, then the core. Stop the fleet first (end the
// context it was started with) so that devices do not retry meanwhile.
func (f *Fabric) Shutdown(ctx context.Context) error {
	var errs []error
	if f.Edge != nil {
		errs = append(errs, f.Edge.Shutdown(ctx))
	}
	if f.Core != nil {
		errs = append(errs, f.Core.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// Run starts the fabric, prints where to find it, and runs until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	f, err := Start(runCtx, cfg)
	if err != nil {
		return err
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	httpAddr := f.Core.HTTPAddr().String()
	code, err := f.Core.Console().OneTimeCode(f.Token)
	if err != nil {
		cancel()
		<-f.Fleet.Done()
		return errors.Join(err, f.Shutdown(context.Background()))
	}
	fmt.Fprintf(out, "Weft is up: a core, an edge and %d simulated devices.\n\n", len(f.Fleet.IDs()))
	fmt.Fprintf(out, "  sign in    http://%s/signin?code=%s  (once)\n", httpAddr, code)
	fmt.Fprintf(out, "  console    http://%s/\n", httpAddr)
	fmt.Fprintf(out, "  API        http://%s/api/v1 (admin token in %s)\n", httpAddr, filepath.Join(cfg.DataDir, "admin.token"))
	fmt.Fprintf(out, "  MQTT       %s (mTLS; device certificates in %s)\n", f.Edge.MQTTAddr(), filepath.Join(cfg.DataDir, "certs", "devices"))
	fmt.Fprintf(out, "  edge API   http://%s/api/v1\n", f.Edge.HTTPAddr())
	fmt.Fprintf(out, "  firmware   https://%s/api/v1/firmware/releases/... for devices (their mTLS certificate, no token)\n", f.DeviceFirmwareAddr)
	printFirmware(out, cfg, f, httpAddr)
	fmt.Fprintf(out, "\nCtrl-C stops it; starting again resumes with the same data.\n")
	<-ctx.Done()
	cancel()
	<-f.Fleet.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer scancel()
	return f.Shutdown(sctx)
}

// printFirmware says where the demo firmware key is, that it is a demo
// key, and how to roll out a release signed with it.
func printFirmware(out io.Writer, cfg Config, f *Fabric, httpAddr string) {
	fmt.Fprintf(out, "             DEMO signing key %s (key id %s)\n", f.FirmwareKey, f.FirmwareKeyID)
	fmt.Fprintf(out, "             made for this demo only: never sign real firmware with it. The core trusts it\n")
	fmt.Fprintf(out, "             and every simulated device pins it; the devices run 1.0.0.")
	if cfg.FirmwareFail > 0 {
		fmt.Fprintf(out, " A new image fails its\n             health check on %.0f%% of them (--firmware-fail %g): watch a rollout halt.", 100*cfg.FirmwareFail, cfg.FirmwareFail)
	}
	tok := filepath.Join(cfg.DataDir, "admin.token")
	fmt.Fprintf(out, "\n\n  Roll out firmware to the pumps:\n")
	fmt.Fprintf(out, "    head -c 1048576 /dev/urandom > demo.bin\n")
	fmt.Fprintf(out, "    weft firmware sign --key %s --image demo.bin --name demo-fw --version 1.1.0 --class pump --out demo.cose\n", f.FirmwareKey)
	fmt.Fprintf(out, "    weft firmware publish --server http://%s --token \"$(cat %s)\" demo.bin demo.cose\n", httpAddr, tok)
	fmt.Fprintf(out, "    weft firmware rollout create --server http://%s --token \"$(cat %s)\" --release demo-fw@1.1.0 \\\n", httpAddr, tok)
	fmt.Fprintf(out, "        --target class:pump --waves 10,50,100 --failure-threshold 10%% --min-executed 2 --device-timeout 5m\n")
}
