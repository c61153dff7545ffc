package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/internal/apiclient"
	sig "github.com/weft-io/weft/internal/signed"
	"github.com/weft-io/weft/models"
)

// This file holds weft model: training, listing and releasing anomaly
// models through a core's API. See docs/models.md.

func newModelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Train anomaly models at the core, list them, release them to the edges",
		Long: `Models are signed, versioned parameters for the edge's detectors, trained at
the core on the replicated telemetry of one device class, signed with the
core's model key and mirrored down to the edges under /models. train makes
a version of a built-in kind; add makes one of an external model, a
program the edges run as a child process; publish releases it as a candidate (scored beside the live
version, never used); promote makes it live; retire stops it; rollback
brings back the previous live version. See docs/models.md.`,
	}
	rf := &remoteFlags{}
	addRemoteFlagsTo(cmd, rf)
	cmd.AddCommand(newModelTrainCmd(rf), newModelAddCmd(rf), newModelLsCmd(rf), newModelGetCmd(rf), newModelScheduleCmd(rf))
	for _, a := range []struct{ action, short string }{
		{models.ActionPublish, "Release a trained version as a candidate"},
		{models.ActionPromote, "Make a version live (the live one is retired)"},
		{models.ActionRetire, "Retire a version: the edges stop running it"},
	} {
		cmd.AddCommand(newModelStageCmd(rf, a.action, a.short))
	}
	cmd.AddCommand(newModelRollbackCmd(rf))
	return cmd
}

func newModelTrainCmd(rf *remoteFlags) *cobra.Command {
	var class, name, from, to, kind string
	var channels []string
	var format *listFormat
	cmd := &cobra.Command{
		Use:   "train --class CLASS --from T1 --to T2 --name NAME",
		Short: "Train a model on a class's telemetry at the core",
		Long: `train asks the core (POST /api/v1/models/train) to fit a model on the
numeric telemetry its devices of CLASS sent between --from and --to (RFC
3339; --to defaults to now), read from the core's history of each device
(or fetched from its edge). The core signs it with its model key
(<certs>/model.key) as the next version of NAME and stores it under
/models, unpublished; train prints how the model scores the training
window per channel: readings, detections with the model and with the
built-in defaults, score quantiles and the fitted epoch and threshold.

--kind channel (default) fits the channel detectors' epoch and threshold
per channel; --kind vector the k-means vector detector's centres over the
channels taken together.`,
		Example: `  weft model train --server https://core:8443 --token $T --class thermo \
      --from 2026-03-01T00:00:00Z --to 2026-03-08T00:00:00Z --name thermo-bands`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := map[string]any{"name": name, "class": class, "kind": kind}
			if len(channels) > 0 {
				req["channels"] = channels
			}
			for _, t := range []struct{ flag, v string }{{"from", from}, {"to", to}} {
				if t.v == "" {
					continue
				}
				ts, err := time.Parse(time.RFC3339Nano, t.v)
				if err != nil {
					return fmt.Errorf("--%s %q: want an RFC 3339 time such as 2026-03-01T10:00:00Z", t.flag, t.v)
				}
				req[t.flag] = ts.UTC()
			}
			body, _ := json.Marshal(req)
			c, err := rf.client()
			if err != nil {
				return err
			}
			var resp map[string]any
			if _, err := c.Do(cmd.Context(), apiclient.Request{Method: "POST", Path: "/api/v1/models/train", Body: body}, &resp); err != nil {
				return err
			}
			if *format != "table" {
				return printOne(cmd.OutOrStdout(), *format, resp, nil)
			}
			m, _ := resp["manifest"].(map[string]any)
			fmt.Fprintf(cmd.OutOrStdout(), "trained %s@%s (class %s, %s devices, %s readings, unpublished)\n",
				cell(lookup(m, "name")), cell(lookup(m, "version")), cell(lookup(m, "class")),
				cell(lookup(m, "training.devices")), cell(lookup(m, "training.readings")))
			rep, _ := lookup(resp, "report.channels").([]any)
			return printItems(cmd.OutOrStdout(), "table", rep, []column{
				field("CHANNEL", "channel"), field("READINGS", "readings"), field("DETECTIONS", "detections"),
				field("DEFAULTS", "defaults_detections"), field("P50", "score_p50"), field("P99", "score_p99"),
				field("MAX", "score_max"), field("EPOCH", "epoch"), field("THRESHOLD", "threshold"),
			})
		},
	}
	cmd.Flags().StringVar(&class, "class", "", "device class to train on (required)")
	cmd.Flags().StringVar(&name, "name", "", "model name (required)")
	cmd.Flags().StringVar(&from, "from", "", "start of the training window, RFC 3339 (required)")
	cmd.Flags().StringVar(&to, "to", "", "end of the training window, excluded, RFC 3339 (default now)")
	cmd.Flags().StringVar(&kind, "kind", models.KindChannel, "model kind: channel or vector")
	cmd.Flags().StringSliceVar(&channels, "channel", nil, "channel to model (repeat; default: those in at least half of the readings)")
	for _, f := range []string{"class", "name", "from"} {
		_ = cmd.MarkFlagRequired(f)
	}
	format = addListOutput(cmd)
	return cmd
}

func newModelAddCmd(rf *remoteFlags) *cobra.Command {
	var class, name, kind, execFile string
	var channels, args []string
	var threshold float64
	var format *listFormat
	cmd := &cobra.Command{
		Use:   "add --kind external --exec FILE --class CLASS --name NAME --channel C...",
		Short: "Add an external model: a program the edges run as a child process",
		Long: `add sends a program (POST /api/v1/models/external) that the edges of CLASS
run as a child process, asking it for a score of each reading over a line
protocol: one JSON object per line on its standard input,
{"seq","device","channel","t","value"}, one per line on its standard
output, {"seq","score"} (docs/models.md#external-models). The core signs
its SHA-256 and size with its model key in the manifest of the next
version of NAME, unpublished; an edge refuses to run any other bytes.
Publish and promote it like a trained version.

The program is one executable file: a binary, or a script with a #! line
(a Python zipapp bundles code and data in one). --channel names the
readings' channels it is sent; --arg adds an argument; --threshold is
the score from which an answer without "detected" is a detection.`,
		Example: `  weft model add --kind external --exec score.py --class thermo --name thermo-py --channel temp
  weft model publish thermo-py@1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kind != models.KindExternal {
				return fmt.Errorf("--kind %q: add makes external models; train makes the built-in kinds", kind)
			}
			if len(channels) == 0 {
				return fmt.Errorf("--channel: name at least one channel the program is sent")
			}
			fi, err := os.Stat(execFile)
			if err != nil {
				return err
			}
			if fi.Size() > models.MaxExecSize {
				return fmt.Errorf("%s: %d bytes, at most %d", execFile, fi.Size(), models.MaxExecSize)
			}
			body, err := os.ReadFile(execFile)
			if err != nil {
				return err
			}
			q := url.Values{"name": {name}, "class": {class}, "channel": channels}
			if len(args) > 0 {
				q["arg"] = args
			}
			if threshold != 0 {
				q.Set("threshold", strconv.FormatFloat(threshold, 'g', -1, 64))
			}
			c, err := rf.client()
			if err != nil {
				return err
			}
			var resp map[string]any
			if _, err := c.Do(cmd.Context(), apiclient.Request{Method: "POST", Path: "/api/v1/models/external", Query: q, Body: body,
				Header: map[string][]string{"Content-Type": {"application/octet-stream"}}}, &resp); err != nil {
				return err
			}
			if *format != "table" {
				return printOne(cmd.OutOrStdout(), *format, resp, nil)
			}
			m, _ := resp["manifest"].(map[string]any)
			fmt.Fprintf(cmd.OutOrStdout(), "added %s@%s (class %s, external, executable sha256 %s, unpublished)\n",
				cell(lookup(m, "name")), cell(lookup(m, "version")), cell(lookup(m, "class")), cell(lookup(m, "exec_sha256")))
			return nil
		},
	}
	cmd.Flags().StringVar(&kind, "kind", models.KindExternal, "model kind: external (the only kind add makes)")
	cmd.Flags().StringVar(&execFile, "exec", "", "the program's executable file (required)")
	cmd.Flags().StringVar(&class, "class", "", "device class it scores (required)")
	cmd.Flags().StringVar(&name, "name", "", "model name (required)")
	cmd.Flags().StringSliceVar(&channels, "channel", nil, "channel the program is sent (repeat; at least one)")
	cmd.Flags().StringArrayVar(&args, "arg", nil, "argument passed to the program (repeat)")
	cmd.Flags().Float64Var(&threshold, "threshold", 0, "score from which an answer without \"detected\" is a detection (default 0.8)")
	for _, f := range []string{"exec", "class", "name"} {
		_ = cmd.MarkFlagRequired(f)
	}
	format = addListOutput(cmd)
	return cmd
}

func newModelScheduleCmd(rf *remoteFlags) *cobra.Command {
	var deadline time.Duration
	var entries []string
	var clear bool
	var format *listFormat
	cmd := &cobra.Command{
		Use:   "schedule [CLASS [--deadline D] [--model NAME[=DEADLINE]]... | CLASS --clear]",
		Short: "Show or set the order and deadlines of a class's live models at the edges",
		Long: `schedule shows every class's schedule (GET /api/v1/schedules), or sets one
class's (PUT /api/v1/schedules/{class}): the order in which the edges ask
its live models for an answer, and how long each has (docs/models.md#schedules).
The first model whose answer comes within its deadline is used; when
none does, the built-in defaults (the canary) answer.

--model NAME[=DEADLINE] lists the models first, in the order given, each
with its deadline (default: the class's); live models not listed come
after them by name. --deadline is the class's deadline (default the
edge's, 10ms), which candidates always get. --clear removes the class's
schedule. Deadlines are durations such as 20ms or 1.5s, at most 10s.`,
		Example: `  weft model schedule
  weft model schedule thermo --deadline 20ms --model thermo-py=50ms --model thermo-bands`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			var resp struct {
				Classes map[string]models.ClassSchedule `json:"classes"`
			}
			if len(args) == 0 {
				if deadline != 0 || len(entries) > 0 || clear {
					return fmt.Errorf("name the class to set")
				}
				if err := c.Get(cmd.Context(), "/api/v1/schedules", nil, &resp); err != nil {
					return err
				}
			} else {
				var cs models.ClassSchedule
				if !clear {
					cs.DeadlineMs = float64(deadline) / float64(time.Millisecond)
					for _, e := range entries {
						n, d, ok := strings.Cut(e, "=")
						en := models.ScheduleEntry{Name: n}
						if ok {
							dd, err := time.ParseDuration(d)
							if err != nil || dd <= 0 {
								return fmt.Errorf("--model %q: want NAME or NAME=DURATION such as thermo-py=50ms", e)
							}
							en.DeadlineMs = float64(dd) / float64(time.Millisecond)
						}
						cs.Models = append(cs.Models, en)
					}
				}
				body, _ := json.Marshal(cs)
				if _, err := c.Do(cmd.Context(), apiclient.Request{Method: "PUT", Path: "/api/v1/schedules/" + url.PathEscape(args[0]), Body: body}, &resp); err != nil {
					return err
				}
			}
			if *format != "table" {
				var m map[string]any
				b, _ := json.Marshal(resp)
				json.Unmarshal(b, &m)
				return printOne(cmd.OutOrStdout(), *format, m, nil)
			}
			var items []any
			for _, class := range slices.Sorted(maps.Keys(resp.Classes)) {
				cs := resp.Classes[class]
				ms := func(v float64) string {
					if v == 0 {
						return "-"
					}
					return (time.Duration(v * float64(time.Millisecond))).String()
				}
				var order []string
				for _, e := range cs.Models {
					order = append(order, e.Name+"="+ms(e.DeadlineMs))
				}
				items = append(items, map[string]any{"class": class, "deadline": ms(cs.DeadlineMs), "models": strings.Join(order, " ")})
			}
			return printItems(cmd.OutOrStdout(), "table", items, []column{field("CLASS", "class"), field("DEADLINE", "deadline"), field("MODELS", "models")})
		},
	}
	cmd.Flags().DurationVar(&deadline, "deadline", 0, "the class's deadline (default the edge's, 10ms)")
	cmd.Flags().StringArrayVar(&entries, "model", nil, "NAME[=DEADLINE]: a model asked in this order, with its deadline (repeat)")
	cmd.Flags().BoolVar(&clear, "clear", false, "remove the class's schedule")
	format = addListOutput(cmd)
	return cmd
}

// modelVersionItems flattens a model into one item per version for
// tables: name, class, version, stage, edges running it.
func modelVersionItems(m map[string]any) []any {
	var out []any
	add := func(list any, stage string) {
		vs, _ := list.([]any)
		for _, v := range vs {
			vm, _ := v.(map[string]any)
			running := 0
			edges, _ := vm["edges"].(map[string]any)
			for _, e := range edges {
				if em, _ := e.(map[string]any); em["state"] == models.StateRunning {
					running++
				}
			}
			st := cell(vm["stage"])
			if stage != "" {
				st = stage
			}
			out = append(out, map[string]any{"name": m["name"], "class": m["class"], "version": vm["version"], "stage": st,
				"running": fmt.Sprintf("%d/%d", running, len(edges)), "kind": lookup(vm, "manifest.kind"),
				"created_at": lookup(vm, "manifest.created_at")})
		}
	}
	add(m["versions"], "")
	add(m["trained"], "trained")
	return out
}

var modelColumns = []column{
	field("NAME", "name"), field("VERSION", "version"), field("CLASS", "class"), field("KIND", "kind"),
	field("STAGE", "stage"), field("RUNNING", "running"), field("CREATED", "created_at"),
}

func newModelLsCmd(rf *remoteFlags) *cobra.Command {
	var format *listFormat
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the models of a node and their versions",
		Long: `ls lists every model (GET /api/v1/models): in a table one row per version
with its stage (trained, candidate, live, retired) and how many of the
edges reporting on it run it; with -o json or yaml the models as the API
gives them.`,
		Example: `  weft model ls
  weft model ls -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			var resp struct {
				Models []map[string]any `json:"models"`
			}
			if err := c.Get(cmd.Context(), "/api/v1/models", nil, &resp); err != nil {
				return err
			}
			if *format != "table" {
				items := make([]any, len(resp.Models))
				for i, m := range resp.Models {
					items[i] = m
				}
				return printItems(cmd.OutOrStdout(), *format, items, nil)
			}
			var items []any
			for _, m := range resp.Models {
				items = append(items, modelVersionItems(m)...)
			}
			return printItems(cmd.OutOrStdout(), *format, items, modelColumns)
		},
	}
	format = addListOutput(cmd)
	return cmd
}

func newModelGetCmd(rf *remoteFlags) *cobra.Command {
	var format *listFormat
	cmd := &cobra.Command{
		Use:   "get NAME[@VERSION]",
		Short: "Show a model, or one version, with the edges' state of it",
		Long: `get shows a model (GET /api/v1/models/{name}): each version's stage and, per
edge that reports on it, its state (running, refused, stopped), readings
scored, agreement with the built-in defaults and drift. With @VERSION,
that version only, with its manifest.`,
		Example: `  weft model get thermo-bands
  weft model get thermo-bands@2 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, version := args[0], uint64(0)
			if strings.Contains(name, "@") {
				ref, err := models.ParseRef(name)
				if err != nil {
					return err
				}
				name, version = ref.Name, ref.Version
			}
			c, err := rf.client()
			if err != nil {
				return err
			}
			var m map[string]any
			if err := c.Get(cmd.Context(), "/api/v1/models/"+url.PathEscape(name), nil, &m); err != nil {
				return err
			}
			if version == 0 {
				if *format != "table" {
					return printOne(cmd.OutOrStdout(), *format, m, nil)
				}
				return printModelEdges(cmd, m, 0)
			}
			for _, list := range []string{"versions", "trained"} {
				vs, _ := m[list].([]any)
				for _, v := range vs {
					vm, _ := v.(map[string]any)
					if cell(vm["version"]) == strconv.FormatUint(version, 10) {
						if *format != "table" {
							return printOne(cmd.OutOrStdout(), *format, vm, nil)
						}
						return printModelEdges(cmd, m, version)
					}
				}
			}
			return fmt.Errorf("model %s has no version %d", name, version)
		},
	}
	format = addListOutput(cmd)
	return cmd
}

// printModelEdges prints a model's versions (or one) and, per version, a
// row per edge.
func printModelEdges(cmd *cobra.Command, m map[string]any, only uint64) error {
	var items []any
	for _, it := range modelVersionItems(m) {
		im := it.(map[string]any)
		if only != 0 && cell(im["version"]) != strconv.FormatUint(only, 10) {
			continue
		}
		items = append(items, im)
	}
	if err := printItems(cmd.OutOrStdout(), "table", items, modelColumns); err != nil {
		return err
	}
	var edges []any
	for _, list := range []string{"versions", "trained"} {
		vs, _ := m[list].([]any)
		for _, v := range vs {
			vm, _ := v.(map[string]any)
			if only != 0 && cell(vm["version"]) != strconv.FormatUint(only, 10) {
				continue
			}
			em, _ := vm["edges"].(map[string]any)
			for _, edge := range slices.Sorted(maps.Keys(em)) {
				s, _ := em[edge].(map[string]any)
				edges = append(edges, map[string]any{"version": vm["version"], "edge": edge, "state": s["state"], "scored": s["scored"],
					"agreement": s["agreement"], "agreement_live": s["agreement_live"], "used": s["used"], "latency_us": s["latency_us"],
					"faults": s["faults"], "drift": s["drift"], "reason": s["reason"]})
			}
		}
	}
	if len(edges) == 0 {
		return nil
	}
	fmt.Fprintln(cmd.OutOrStdout())
	return printItems(cmd.OutOrStdout(), "table", edges, []column{
		field("VERSION", "version"), field("EDGE", "edge"), field("STATE", "state"), field("SCORED", "scored"),
		field("USED", "used"), field("AGREEMENT", "agreement"), field("VS-LIVE", "agreement_live"), field("LATENCY-US", "latency_us"),
		field("FAULTS", "faults"), field("DRIFT", "drift"), field("REASON", "reason"),
	})
}

func newModelStageCmd(rf *remoteFlags, action, short string) *cobra.Command {
	var format *listFormat
	cmd := &cobra.Command{
		Use:     action + " NAME@VERSION",
		Short:   short,
		Long:    short + ` (POST /api/v1/models/{name}/{version}/` + action + `), and show the model's versions. See docs/models.md for the stages.`,
		Example: `  weft model ` + action + ` thermo-bands@2`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := models.ParseRef(args[0])
			if err != nil {
				return err
			}
			return modelPost(cmd, rf, *format, "/api/v1/models/"+url.PathEscape(ref.Name)+"/"+strconv.FormatUint(ref.Version, 10)+"/"+action)
		},
	}
	format = addListOutput(cmd)
	return cmd
}

func newModelRollbackCmd(rf *remoteFlags) *cobra.Command {
	var format *listFormat
	cmd := &cobra.Command{
		Use:     "rollback NAME",
		Short:   "Retire the live version and make the previous live one live again",
		Long:    `rollback (POST /api/v1/models/{name}/rollback) retires the live version and makes the version that was live before it live again, in one step.`,
		Example: `  weft model rollback thermo-bands`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return modelPost(cmd, rf, *format, "/api/v1/models/"+url.PathEscape(args[0])+"/rollback")
		},
	}
	format = addListOutput(cmd)
	return cmd
}

func modelPost(cmd *cobra.Command, rf *remoteFlags, format listFormat, path string) error {
	c, err := rf.client()
	if err != nil {
		return err
	}
	var m map[string]any
	if _, err := c.Do(cmd.Context(), apiclient.Request{Method: "POST", Path: path}, &m); err != nil {
		return err
	}
	if format != "table" {
		return printOne(cmd.OutOrStdout(), format, m, nil)
	}
	return printItems(cmd.OutOrStdout(), "table", modelVersionItems(m), modelColumns)
}

// loadModel returns a model's manifest and parameters: from dir (a copy
// of /models: dir/NAME/VERSION/manifest.cose and params.json), verified
// against the pinned key in keyFile when given; or, with dir empty, from
// the node rf names, the parameters checked against the manifest's
// digest.
func loadModel(ctx context.Context, rf *remoteFlags, ref models.Ref, dir, keyFile string) (models.Manifest, models.ParamsFile, error) {
	var man, params []byte
	var m models.Manifest
	if dir != "" {
		vdir := filepath.Join(dir, ref.Name, strconv.FormatUint(ref.Version, 10))
		var err error
		if man, err = os.ReadFile(filepath.Join(vdir, models.ManifestFile)); err != nil {
			return m, models.ParamsFile{}, err
		}
		if params, err = os.ReadFile(filepath.Join(vdir, models.ParamsName)); err != nil {
			return m, models.ParamsFile{}, err
		}
		in := models.Input{Manifest: man, Params: &models.Params{SHA256: sha256.Sum256(params), Size: int64(len(params))}, Newest: ref.Version, AllowSame: true}
		if keyFile != "" {
			k, err := models.ReadPublicKey(keyFile)
			if err != nil {
				return m, models.ParamsFile{}, err
			}
			in.Keys = []sig.Key{k}
			v := models.Verify(in)
			if !v.OK() {
				return m, models.ParamsFile{}, v.Err()
			}
			m = v.Manifest
		} else if m, err = models.Parse(man); err != nil {
			return m, models.ParamsFile{}, err
		}
	} else {
		c, err := rf.client()
		if err != nil {
			return m, models.ParamsFile{}, err
		}
		base := "/api/v1/models/" + url.PathEscape(ref.Name) + "/" + strconv.FormatUint(ref.Version, 10)
		var resp struct {
			Versions []struct {
				Version  uint64          `json:"version"`
				Manifest models.Manifest `json:"manifest"`
			} `json:"versions"`
			Trained []struct {
				Version  uint64          `json:"version"`
				Manifest models.Manifest `json:"manifest"`
			} `json:"trained"`
		}
		if err := c.Get(ctx, "/api/v1/models/"+url.PathEscape(ref.Name), nil, &resp); err != nil {
			return m, models.ParamsFile{}, err
		}
		found := false
		for _, v := range append(resp.Versions, resp.Trained...) {
			if v.Version == ref.Version {
				m, found = v.Manifest, true
			}
		}
		if !found {
			return m, models.ParamsFile{}, fmt.Errorf("model %s has no version %d", ref.Name, ref.Version)
		}
		var raw json.RawMessage
		if err := c.Get(ctx, base+"/params", nil, &raw); err != nil {
			return m, models.ParamsFile{}, err
		}
		params = raw
		if sum := sha256.Sum256(params); sum != m.SHA256 {
			return m, models.ParamsFile{}, fmt.Errorf("model %s: parameters of sha256 %s, manifest says %s", ref, hex.EncodeToString(sum[:]), m.Digest())
		}
	}
	p, err := models.DecodeParams(params, m)
	return m, p, err
}
