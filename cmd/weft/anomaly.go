package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/anomaly"
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

// errNoModels is what --model answers until models can be run.
var errNoModels = errors.New("--model is not supported yet: there are no models to run, only the default detectors")

func newAnomalyScoreCmd() *cobra.Command {
	var model string
	cmd := &cobra.Command{
		Use:   "score [--model NAME@VERSION] FILE.csv",
		Short: "Score a series of readings with the default detectors",
		Long: `Read a series in the Numenta Anomaly Benchmark's format (a header line,
then "timestamp,value" lines, the timestamp as 2006-01-02 15:04:05 in
UTC; - reads stdin), score each reading with one channel of the default
detectors, as an edge scores a channel, and print one
"timestamp,value,score,detection" line per reading after a header line:
the score in [0, 1], the detection 1 when the reading is reported as an
anomaly, else 0. The detections are those TestNAB scores.

--model would score with a released model instead; it is not supported
yet (there are no models), and asking for one fails.`,
		Example: `  weft anomaly score ec2_cpu_utilization_825cc2.csv
  weft anomaly score data.csv | awk -F, '$4 == 1'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("model") {
				return fmt.Errorf("%w (asked for %q)", errNoModels, model)
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
			for i, res := range anomaly.ScoreSeries(anomaly.Config{}, points) {
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
	cmd.Flags().StringVar(&model, "model", "", "score with the model NAME@VERSION (not supported yet)")
	return cmd
}
