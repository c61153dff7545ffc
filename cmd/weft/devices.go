package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/internal/apiclient"
)

// This file holds weft devices: the fleet's devices through a node's API.

func newDevicesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "List and read devices, set their desired state and call them, through a node's API",
		Long: `Commands against the API of a running node (see weft login): list devices
with the API's filters, read a device's shadow and history, set its desired
state and call it. Errors of the API end the command with status 1 and the
problem's status, title and detail, such as

  weft: 403 Forbidden: role viewer may not ...`,
	}
	rf := addRemoteFlags(cmd)
	cmd.AddCommand(newDevicesLsCmd(rf), newDevicesGetCmd(rf), newDevicesDesiredCmd(rf), newDevicesHistoryCmd(rf), newDevicesCallCmd(rf))
	return cmd
}

// deviceColumns are the columns of a device in a table.
var deviceColumns = []column{
	field("ID", "id"), field("CLASS", "class"), field("EDGE", "edge"), field("SITE", "site"),
	field("CONNECTED", "connected"), field("IN-SYNC", "in_sync"), field("ANOMALOUS", "anomalous"),
	field("SCORE", "score"), field("FIRMWARE", "firmware"), field("LAST-SEEN", "last_seen"), field("VERSION", "version"),
}

// devicePath is the route of a device, and what follows it.
func devicePath(id string, rest string) string {
	return "/api/v1/devices/" + url.PathEscape(id) + rest
}

// completeDevices completes a device id from the node's list.
func completeDevices(rf *remoteFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := rf.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var page struct {
			Devices []struct {
				ID string `json:"id"`
			} `json:"devices"`
		}
		if err := c.Get(cmd.Context(), "/api/v1/devices", url.Values{"prefix": {prefix}, "limit": {"100"}}, &page); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var ids []cobra.Completion
		for _, d := range page.Devices {
			ids = append(ids, d.ID)
		}
		return ids, cobra.ShellCompDirectiveNoFileComp
	}
}

func newDevicesLsCmd(rf *remoteFlags) *cobra.Command {
	var f struct {
		class, edge, site, prefix, anomaly string
		connected, inSync                  bool
		limit, pageSize                    int
	}
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List devices, filtered",
		Long: `List the devices the token may see, in id order, with the API's filters.
--connected, --in-sync and --anomaly alone mean true; --connected=false and
--in-sync=false select the others. --anomaly=0.5 selects devices whose
latest anomaly score is at least 0.5 (true: 0.8).

The API answers in pages; ls follows them until the last, or until --limit
devices (0: all). --page-size is how many it asks for at a time.`,
		Example: `  weft devices ls --class pump --in-sync=false
  weft devices ls --edge truck-7 --connected -o json
  weft devices ls --anomaly --limit 20`,
		Args: cobra.NoArgs,
	}
	fl := cmd.Flags()
	fl.StringVar(&f.class, "class", "", "devices of this class")
	fl.StringVar(&f.edge, "edge", "", "devices behind this edge")
	fl.StringVar(&f.site, "site", "", "devices at this site")
	fl.StringVar(&f.prefix, "prefix", "", "devices whose id starts with this")
	fl.BoolVar(&f.connected, "connected", false, "connected devices (=false: disconnected ones)")
	fl.BoolVar(&f.inSync, "in-sync", false, "devices that applied all desired state (=false: those that did not)")
	fl.StringVar(&f.anomaly, "anomaly", "", "devices whose latest anomaly score is at least 0.8, or the score given (=0.5); =false: below 0.8")
	fl.Lookup("anomaly").NoOptDefVal = "true"
	fl.IntVar(&f.limit, "limit", 0, "most devices to list (0: all)")
	fl.IntVar(&f.pageSize, "page-size", 500, "devices asked for per request, 1 to 1000")
	out := addListOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if f.limit < 0 {
			return fmt.Errorf("--limit %d: want 0 (all) or more", f.limit)
		}
		if f.pageSize < 1 || f.pageSize > 1000 {
			return fmt.Errorf("--page-size %d: want 1 to 1000", f.pageSize)
		}
		c, err := rf.client()
		if err != nil {
			return err
		}
		q := url.Values{}
		for name, v := range map[string]string{"class": f.class, "edge": f.edge, "site": f.site, "prefix": f.prefix, "anomaly": f.anomaly} {
			if v != "" {
				q.Set(name, v)
			}
		}
		if fl.Changed("connected") {
			q.Set("connected", strconv.FormatBool(f.connected))
		}
		if fl.Changed("in-sync") {
			q.Set("in_sync", strconv.FormatBool(f.inSync))
		}
		var items []any
		for {
			n := f.pageSize
			if f.limit > 0 {
				n = min(n, f.limit-len(items))
			}
			q.Set("limit", strconv.Itoa(n))
			var page struct {
				Devices []any  `json:"devices"`
				Next    string `json:"next"`
			}
			if err := c.Get(cmd.Context(), "/api/v1/devices", q, &page); err != nil {
				return err
			}
			items = append(items, page.Devices...)
			if page.Next == "" || (f.limit > 0 && len(items) >= f.limit) {
				break
			}
			q.Set("after", page.Next)
		}
		return printItems(cmd.OutOrStdout(), *out, items, deviceColumns)
	}
	return cmd
}

// printShadow writes a device's shadow: as JSON or YAML whole, or as its
// row of the device table followed by its reported, desired and delta
// state.
func printShadow(cmd *cobra.Command, format listFormat, doc map[string]any) error {
	w := cmd.OutOrStdout()
	switch format {
	case "json":
		return printIndented(w, doc)
	case "yaml":
		return printYAML(w, doc)
	}
	if err := printItems(w, format, []any{doc}, deviceColumns); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, k := range []string{"reported", "desired", "delta"} {
		v := doc[k]
		if v == nil {
			v = map[string]any{}
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%-9s %s\n", k+":", b)
	}
	return nil
}

func newDevicesGetCmd(rf *remoteFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Print a device's shadow",
		Long: `Print a device's shadow: its row as weft devices ls shows it, then its
reported, desired and delta state; -o json or -o yaml print the whole
shadow as the API answers it.`,
		Example:           `  weft devices get pump-7 -o yaml`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeDevices(rf),
	}
	out := addListOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := rf.client()
		if err != nil {
			return err
		}
		var doc map[string]any
		if err := c.Get(cmd.Context(), devicePath(args[0], ""), nil, &doc); err != nil {
			return err
		}
		return printShadow(cmd, *out, doc)
	}
	return cmd
}

func newDevicesDesiredCmd(rf *remoteFlags) *cobra.Command {
	var patch string
	var ifVersion uint64
	cmd := &cobra.Command{
		Use:   "desired ID (KEY=VALUE... | --patch JSON)",
		Short: "Set a device's desired state",
		Long: `Set fields of a device's desired state and print its new shadow. The node
sends the device the delta.

Each KEY=VALUE sets one field. A VALUE that parses as JSON is taken as
JSON: setpoint=7 is the number 7, on=true a boolean, tags='["a","b"]' an
array, and mode=null removes the field. Any other VALUE is a string
(mode=eco); quote a string that looks like JSON ('code="7"'). Dots in KEY
make nested objects: cfg.mode=eco cfg.level=2 sets {"cfg":{"mode":"eco",
"level":2}}, and leaves cfg's other fields as they are.

--patch gives the whole change as a JSON merge patch (RFC 7386) instead,
for keys holding dots. --if-version makes the change happen only if the
shadow still has that version (see weft devices get).`,
		Example: `  weft devices desired pump-7 setpoint=7 mode=eco
  weft devices desired pump-7 cfg.sample_interval_s=10 cfg.debug=null
  weft devices desired pump-7 --patch '{"setpoint": 7, "sample_interval_s": null}' --if-version 14`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeDevices(rf),
	}
	cmd.Flags().StringVar(&patch, "patch", "", "the change as a JSON merge patch, instead of KEY=VALUE arguments")
	cmd.Flags().Uint64Var(&ifVersion, "if-version", 0, "change only if the shadow has this version")
	out := addListOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var body []byte
		switch {
		case patch != "" && len(args) > 1:
			return fmt.Errorf("give KEY=VALUE arguments or --patch, not both")
		case patch != "":
			if err := checkJSON("the patch (--patch)", []byte(patch)); err != nil {
				return err
			}
			if t := bytes.TrimSpace([]byte(patch)); len(t) == 0 || t[0] != '{' {
				return fmt.Errorf("the patch (--patch) is not a JSON object")
			}
			body = []byte(patch)
		case len(args) == 1:
			return fmt.Errorf("nothing to set: give KEY=VALUE arguments or --patch JSON")
		default:
			m, err := parseAssignments(args[1:])
			if err != nil {
				return err
			}
			if body, err = json.Marshal(m); err != nil {
				return err
			}
		}
		c, err := rf.client()
		if err != nil {
			return err
		}
		hdr := http.Header{"Content-Type": {"application/merge-patch+json"}}
		if cmd.Flags().Changed("if-version") {
			hdr.Set("If-Match", strconv.Quote(strconv.FormatUint(ifVersion, 10)))
		}
		var doc map[string]any
		if _, err := c.Do(cmd.Context(), apiclient.Request{Method: http.MethodPatch, Path: devicePath(args[0], "/desired"), Header: hdr, Body: body}, &doc); err != nil {
			return err
		}
		return printShadow(cmd, *out, doc)
	}
	return cmd
}

// parseAssignments turns KEY=VALUE arguments into a merge patch: a VALUE
// that parses as JSON is that JSON, any other a string; dots in KEY make
// nested objects. A key set twice, or set both to a value and to an
// object of fields, is an error.
func parseAssignments(args []string) (map[string]any, error) {
	patch := map[string]any{}
	// set records the keys given, so that one given twice is caught even
	// when its value is an object.
	set := map[string]bool{}
	for _, a := range args {
		key, val, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want KEY=VALUE", a)
		}
		parts := strings.Split(key, ".")
		for _, p := range parts {
			if p == "" {
				return nil, fmt.Errorf("%q: the key has an empty part; to set keys with dots, use --patch", a)
			}
		}
		v := any(val)
		if json.Valid([]byte(val)) {
			dec := json.NewDecoder(strings.NewReader(val))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				return nil, fmt.Errorf("%q: %w", a, err)
			}
		}
		m := patch
		for i, p := range parts[:len(parts)-1] {
			prefix := strings.Join(parts[:i+1], ".")
			if set[prefix] {
				return nil, fmt.Errorf("%q: %s is set to a value and to fields", a, prefix)
			}
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		if set[key] {
			return nil, fmt.Errorf("%q: %s is set twice", a, key)
		}
		last := parts[len(parts)-1]
		if _, ok := m[last]; ok {
			return nil, fmt.Errorf("%q: %s is set to a value and to fields", a, key)
		}
		set[key] = true
		m[last] = v
	}
	return patch, nil
}

// messageColumns are the columns of a device's messages in a table.
var messageColumns = []column{
	field("TIMESTAMP", "timestamp"), field("PARTITION", "partition"), field("OFFSET", "offset"),
	field("MQTT-TOPIC", "headers.mqtt_topic"),
	{"VALUE", func(m map[string]any) string {
		if v, ok := m["value_b64"].(string); ok {
			return "base64:" + v
		}
		return cell(m["value"])
	}},
}

func newDevicesHistoryCmd(rf *remoteFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history ID [--since 1h | --from TIME [--to TIME]]",
		Short: "List a device's messages over a time range",
		Long: `List a device's messages (telemetry, events, reports), oldest first.
With --since or --from, the first --limit messages of the range, read page
after page (0: all of them); without, the latest --limit before --to (or
now). Times are RFC 3339. -o json and -o yaml print the messages as the API
does (see docs/api.md, Read messages).`,
		Example: `  weft devices history pump-7 --since 1h
  weft devices history pump-7 --from 2026-03-01T10:00:00Z --to 2026-03-01T11:00:00Z -o json`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeDevices(rf),
	}
	rng := addSinceFlags(cmd)
	cmd.Flags().IntVar(&limit, "limit", 100, "most messages to list (0: all of a range with a start)")
	out := addListOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		q := url.Values{}
		hasFrom, err := rng.query(q, time.Now())
		if err != nil {
			return err
		}
		if limit < 0 || (!hasFrom && (limit == 0 || limit > 10000)) {
			return fmt.Errorf("--limit %d: want 1 to 10000 (0, all, or more need --since or --from)", limit)
		}
		c, err := rf.client()
		if err != nil {
			return err
		}
		const maxPage = 10000
		type key struct{ part, off string }
		seen := map[key]bool{}
		var items []any
		for {
			n := maxPage
			if limit > 0 {
				n = min(n, limit-len(items))
			}
			q.Set("limit", strconv.Itoa(n))
			var page struct {
				Source   string           `json:"source"`
				Edge     string           `json:"edge"`
				Messages []map[string]any `json:"messages"`
				More     bool             `json:"more"`
			}
			if err := c.Get(cmd.Context(), devicePath(args[0], "/history"), q, &page); err != nil {
				return err
			}
			if page.Source == "edge" && len(items) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "messages fetched from edge %s\n", page.Edge)
			}
			added := 0
			for _, m := range page.Messages {
				k := key{cell(m["partition"]), cell(m["offset"])}
				if seen[k] {
					continue
				}
				seen[k] = true
				items = append(items, m)
				added++
			}
			if !page.More || !hasFrom || added == 0 || (limit > 0 && len(items) >= limit) {
				break
			}
			// The next page starts at the last message's time; the
			// messages of that instant already listed are skipped.
			last, _ := page.Messages[len(page.Messages)-1]["timestamp"].(string)
			q.Set("from", last)
		}
		return printItems(cmd.OutOrStdout(), *out, items, messageColumns)
	}
	return cmd
}

func newDevicesCallCmd(rf *remoteFlags) *cobra.Command {
	var data string
	var timeout time.Duration
	var queue bool
	cmd := &cobra.Command{
		Use:   "call ID NAME [--data JSON] [--timeout 10s] [--queue]",
		Short: "Call a command of a device and print its answer",
		Long: `Send the command NAME to a device with the payload --data (default {}) and
wait up to --timeout (at most 1m) for its answer, which is printed. A device
that is not connected is refused (409) unless --queue, which has it
delivered if the device comes back within the timeout. A device that does
not answer in time is an error (504); the command may still reach it.`,
		Example: `  weft devices call pump-7 ping
  weft devices call pump-7 reboot --data '{"delay_s": 5}' --timeout 30s --queue`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeDevices(rf),
	}
	cmd.Flags().StringVar(&data, "data", "", "the command's payload, JSON (default {})")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long the node waits for the answer, at most 1m")
	cmd.Flags().BoolVar(&queue, "queue", false, "send it even if the device is not connected")
	out := addListOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		body := map[string]any{"name": args[1], "timeout": timeout.String()}
		if data != "" {
			if err := checkJSON("the payload (--data)", []byte(data)); err != nil {
				return err
			}
			body["payload"] = json.RawMessage(data)
		}
		if queue {
			body["queue"] = true
		}
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		c, err := rf.client()
		if err != nil {
			return err
		}
		var answer map[string]any
		if _, err := c.Do(cmd.Context(), apiclient.Request{Method: http.MethodPost, Path: devicePath(args[0], "/commands"), Body: b}, &answer); err != nil {
			return err
		}
		return printOne(cmd.OutOrStdout(), *out, answer, []column{
			field("ID", "id"), field("NAME", "name"), field("LATENCY-MS", "latency_ms"), field("RESPONSE", "response"),
		})
	}
	return cmd
}
