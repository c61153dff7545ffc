package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/weft-io/weft/device"
)

func newDeviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "device",
		Short: "Device-side tools: the fleet simulator",
	}
	cmd.AddCommand(newDeviceSimCmd())
	return cmd
}

func newDeviceSimCmd() *cobra.Command {
	var cfg device.SimConfig
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a simulated fleet of mTLS MQTT devices against a gateway",
		Long: `Run --count simulated devices against the gateway at --gateway, over mutual-TLS
MQTT 5, spread over three classes (pump, chiller, meter). Each device sends
telemetry on a daily curve with noise and rare anomalies, reports its state to
its shadow, and applies desired changes that arrive as shadow deltas
(updates/device/<id>/shadow/delta): sample_interval_s and setpoint, reporting
them back after a short delay, and reporting an error field for values it
rejects. Device certificates come from --certs/devices and are issued there
when --certs holds the device CA key. Ctrl-C stops it.`,
		Example: `  weft device sim --count 50 --gateway 127.0.0.1:8883 --certs C`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			fleet, err := device.StartFleet(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d devices simulated against %s; Ctrl-C stops them\n", len(fleet.IDs()), cfg.Dial.Addr)
			<-fleet.Done()
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Count, "count", 10, "number of devices")
	fl.StringVar(&cfg.Dial.Addr, "gateway", "127.0.0.1:8883", "gateway address")
	fl.StringVar(&cfg.CertsDir, "certs", "", "certificate directory (required)")
	fl.StringVar(&cfg.IDPrefix, "id-prefix", "sim", "prefix of the device ids")
	fl.DurationVar(&cfg.Interval, "interval", 5*time.Second, "telemetry interval until a device is told otherwise")
	fl.Float64Var(&cfg.AnomalyRate, "anomaly-rate", 0.002, "chance per sample that an anomaly starts")
	cmd.MarkFlagRequired("certs")
	return cmd
}
