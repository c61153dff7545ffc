package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/models"
)

// This file holds weft anomaly: the edge's detectors run over a file of
// readings. See docs/anomaly.md.

func newAnomalyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "anomaly",
		Short: "Run the anomaly detectors over a file of readings",
		Long: `Run the detectors an edge runs on each channel of its devices over a
file of readings, offline. See docs/anomaly.md.`,
	}
	cmd.AddCommand(newAnomalyScoreCmd())
	return cmd
}

func newAnomalyScoreCmd() *cobra.Command {
	var model, dir, keyFile, channel string
	var rf *remoteFlags
	cmd := &cobra.Command{
		Use:   "score [--model NAME@VERSION] FILE.csv",
		Short: "Score a series of readings with the default detectors or a model",
		Long: `Read a series in the Numenta Anomaly Benchmark's format (a header line,
then "timestamp,value" lines, the timestamp as 2006-01-02 15:04:05 in
UTC; - reads stdin), score each reading with one channel of the default
detectors, as an edge scores a channel, and print one
"timestamp,value,score,detection" line per reading after a header line:
the score in [0, 1], the detection 1 when the reading is reported as an
anomaly, else 0. The detections are those TestNAB scores.

--model NAME@VERSION scores with a trained model's parameters for one of
its channels (--channel, default its first) instead of the defaults. The
model comes from --models DIR, a copy of a node's /models volume
(DIR/NAME/VERSION/manifest.cose and params.json), verified against the
model key in --key (the core's model.pub.json) when given; or, without
--models, from the node's API (--server and --token, or the saved
context), its parameters checked against the manifest's digest. A vector
model scores several channels together and cannot score a single series.
See docs/models.md.`,
		Example: `  weft anomaly score ec2_cpu_utilization_825cc2.csv
  weft anomaly score data.csv | awk -F, '$4 == 1'
  weft anomaly score --model thermo-bands@2 --channel temp data.csv
  weft anomaly score --model thermo-bands@2 --models ./models --key certs/model.pub.json data.csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := anomaly.Config{}
			if model != "" {
				ref, err := models.ParseRef(model)
				if err != nil {
					return err
				}
				m, p, err := loadModel(cmd.Context(), rf, ref, dir, keyFile)
				if err != nil {
					return err
				}
				if m.Kind != models.KindChannel {
					return fmt.Errorf("model %s is of kind %s: it scores several channels together, not one series", ref, m.Kind)
				}
				if channel == "" {
					channel = m.Channels[0]
				}
				c, ok := p.Channels[channel]
				if !ok {
					return fmt.Errorf("model %s has no channel %q (it has %s)", ref, channel, strings.Join(m.Channels, ", "))
				}
				cfg = c
			}
			f := os.Stdin
			if args[0] != "-" {
				var err error
				if f, err = os.Open(args[0]); err != nil {
					return err
				}
				defer f.Close()
			}
			points, err := anomaly.ReadSeries(f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			fmt.Fprintln(w, "timestamp,value,score,detection")
			for i, res := range anomaly.ScoreSeries(cfg, points) {
				p := points[i]
				detected := 0
				if res.Detected {
					detected = 1
				}
				fmt.Fprintf(w, "%s,%s,%s,%d\n", p.At.UTC().Format(time.DateTime),
					strconv.FormatFloat(p.Value, 'g', -1, 64), strconv.FormatFloat(res.Score, 'f', 4, 64), detected)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "score with the model NAME@VERSION instead of the defaults")
	cmd.Flags().StringVar(&dir, "models", "", "directory holding a copy of /models to read the model from (default: the node's API)")
	cmd.Flags().StringVar(&keyFile, "key", "", "the model key to verify a model of --models against (model.pub.json)")
	cmd.Flags().StringVar(&channel, "channel", "", "the model's channel to score the series with (default: its first)")
	rf = addRemoteFlags(cmd)
	return cmd
}
