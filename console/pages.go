package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/cluster"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// pageSize is the number of devices on a page of the device list.
const pageSize = 50

// kv is one row of a key/value table.
type kv struct {
	Key, Value string
}

// flatten lays a decoded JSON object out as rows: nested objects as
// dotted keys, in key order.
func flatten(prefix string, m map[string]any, out []kv) []kv {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := m[k].(map[string]any); ok && len(sub) > 0 {
			out = flatten(key, sub, out)
			continue
		}
		out = append(out, kv{key, displayValue(m[k])})
	}
	return out
}

// flatMap is flatten as a map.
func flatMap(m map[string]any) map[string]string {
	out := map[string]string{}
	for _, r := range flatten("", m, nil) {
		out[r.Key] = r.Value
	}
	return out
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r.Context())
	type data struct {
		Sum      shadow.Summary
		Edges    []api.EdgeStatus
		HasLinks bool
		Missing  []string
		Err      string
	}
	d := data{HasLinks: s.api.HasLinks()}
	var err error
	if d.Sum, err = s.api.Fleet(r.Context(), sess.claims); err == nil {
		d.Edges, d.Missing, err = s.listEdges(r)
	}
	if err != nil {
		d.Err = problemText(err)
	}
	v := s.view(r, "Fleet", "overview", d)
	v.Events = "/live/fleet"
	s.renderPart(w, r, "overview", v, "overview.live")
}

// renderPart renders the page, or only its live region when the script
// asks for it (?part=live).
func (s *Server) renderPart(w http.ResponseWriter, r *http.Request, page string, v *view, parts ...string) {
	if p := r.URL.Query().Get("part"); p != "" {
		for _, name := range parts {
			if name == page+"."+p {
				s.renderView(w, r, http.StatusOK, page, name, v)
				return
			}
		}
		http.Error(w, "no such part", http.StatusNotFound)
		return
	}
	s.renderView(w, r, http.StatusOK, page, "layout", v)
}

// problemText is what a page says about an error.
func problemText(err error) string {
	var le *listError
	switch {
	case errors.As(err, &le) && le.detail != "":
		return le.detail
	case errors.Is(err, api.ErrScopeUnenforced):
		return "Your token's scope cannot be applied to devices."
	case errors.Is(err, store.ErrNotFound):
		return "Not found."
	case errors.Is(err, store.ErrClosed):
		return "The node is shutting down."
	}
	return "Something went wrong reading the store; the node's log has the details."
}

// listQuery is the device list's filter form.
type listQuery struct {
	Prefix, Class, Edge, Connected, Sync string
	Anomalous                            bool
	After                                string
}

func (q listQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"q": q.Prefix, "class": q.Class, "edge": q.Edge, "connected": q.Connected, "sync": q.Sync, "after": q.After} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Anomalous {
		v.Set("anomalous", "1")
	}
	return v
}

func (q listQuery) url() string {
	if enc := q.values().Encode(); enc != "" {
		return "/devices?" + enc
	}
	return "/devices"
}

func (q listQuery) filter() shadow.Filter {
	f := shadow.Filter{Prefix: q.Prefix, Class: q.Class, Edge: q.Edge}
	b := func(v string) *bool {
		switch v {
		case "yes":
			t := true
			return &t
		case "no":
			f := false
			return &f
		}
		return nil
	}
	f.Connected, f.InSync = b(q.Connected), b(q.Sync)
	if q.Anomalous {
		t := true
		f.Anomalous = &t
	}
	return f
}

func (s *Server) deviceList(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r.Context())
	f := r.URL.Query()
	q := listQuery{
		Prefix: strings.TrimSpace(f.Get("q")), Class: f.Get("class"), Edge: f.Get("edge"),
		Connected: f.Get("connected"), Sync: f.Get("sync"), Anomalous: f.Get("anomalous") != "", After: f.Get("after"),
	}
	type data struct {
		Q                 listQuery
		Devices           []api.DeviceSummary
		NextURL, FirstURL string
		Classes, Edges    []string
		Visible           int
		Partial           bool
		Missing           []string
		LiveURL           string
		Err               string
	}
	lv := q.values()
	lv.Set("part", "live")
	d := data{Q: q, Devices: []api.DeviceSummary{}, LiveURL: "/devices?" + lv.Encode()}
	if sum, err := s.api.Fleet(r.Context(), sess.claims); err == nil {
		d.Visible = sum.Devices
		for _, c := range sum.Classes {
			d.Classes = append(d.Classes, c.Name)
		}
		for _, e := range sum.Edges {
			d.Edges = append(d.Edges, e.Name)
		}
	}
	page, missing, err := s.listDevices(r, api.DeviceQuery{Filter: q.filter(), After: q.After, Limit: pageSize})
	if err != nil {
		d.Err = problemText(err)
	}
	d.Devices = append(d.Devices, page.Devices...)
	d.Missing = missing
	if page.Next != "" {
		nq := q
		nq.After = page.Next
		d.NextURL = nq.url()
		d.Partial = len(page.Devices) < pageSize
	}
	if q.After != "" {
		fq := q
		fq.After = ""
		d.FirstURL = fq.url()
	}
	v := s.view(r, "Devices", "devices", d)
	v.Events = "/live/fleet"
	s.renderPart(w, r, "devices", v, "devices.live")
}

// listDevices is the one way the pages list devices: the page of
// devices q asks for that the visitor's token may see, from this node's
// store, or, on a node of a core cluster (Config.Lists), from every
// node, with the nodes whose part is missing.
func (s *Server) listDevices(r *http.Request, q api.DeviceQuery) (api.DevicesResponse, []string, error) {
	if s.cfg.Lists == nil {
		page, err := s.api.Devices(r.Context(), sessionOf(r.Context()).claims, q)
		out := api.DevicesResponse{Devices: make([]api.DeviceSummary, 0, len(page.Devices)), Next: page.Next}
		for i := range page.Devices {
			out.Devices = append(out.Devices, api.SummaryOf(&page.Devices[i]))
		}
		return out, nil, err
	}
	var out api.DevicesResponse
	missing, err := s.list(r, "/api/v1/devices", deviceQueryValues(q), &out)
	return out, missing, err
}

// listEdges is the one way the pages list edges, as listDevices lists
// devices.
func (s *Server) listEdges(r *http.Request) ([]api.EdgeStatus, []string, error) {
	if s.cfg.Lists == nil {
		edges, err := s.api.Edges(r.Context(), sessionOf(r.Context()).claims)
		return edges, nil, err
	}
	var out api.EdgesResponse
	missing, err := s.list(r, "/api/v1/edges", nil, &out)
	return out.Edges, missing, err
}

// listModels is the one way the models page lists models, as
// listDevices lists devices: on a node of a core cluster each version's
// edges are every node's.
func (s *Server) listModels(r *http.Request) ([]api.ModelResponse, []string, error) {
	if s.cfg.Lists == nil {
		list, err := s.api.Models(r.Context())
		return list, nil, err
	}
	var out api.ModelsResponse
	missing, err := s.list(r, "/api/v1/models", nil, &out)
	return out.Models, missing, err
}

// deviceQueryValues is q as the query of GET /api/v1/devices
// (api.ParseDeviceQuery reads it back).
func deviceQueryValues(q api.DeviceQuery) url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("prefix", q.Filter.Prefix)
	set("class", q.Filter.Class)
	set("edge", q.Filter.Edge)
	set("site", q.Filter.Site)
	set("after", q.After)
	b := func(k string, p *bool) {
		if p != nil {
			v.Set(k, strconv.FormatBool(*p))
		}
	}
	b("connected", q.Filter.Connected)
	b("in_sync", q.Filter.InSync)
	switch {
	case q.Filter.Anomalous != nil && *q.Filter.Anomalous && q.Filter.Threshold > 0:
		v.Set("anomaly", strconv.FormatFloat(q.Filter.Threshold, 'g', -1, 64))
	default:
		b("anomaly", q.Filter.Anomalous)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// listError is a list Config.Lists refused: its problem's detail, or
// title, is what the page says.
type listError struct {
	status int
	detail string
}

func (e *listError) Error() string {
	return fmt.Sprintf("console: list answered %d %s", e.status, e.detail)
}

// list gets path?query from Config.Lists as the visitor, decodes the
// answer into v and returns the nodes whose part it says is missing.
func (s *Server) list(r *http.Request, path string, query url.Values, v any) ([]string, error) {
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.RemoteAddr = r.RemoteAddr
	req.Header.Set("Authorization", "Bearer "+sessionOf(r.Context()).token)
	req.Header.Set("Accept", "application/json")
	if id := r.Header.Get("X-Request-Id"); id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	rec := httptest.NewRecorder()
	s.cfg.Lists.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		var p api.ProblemDetails
		json.Unmarshal(rec.Body.Bytes(), &p)
		if p.Detail == "" {
			p.Detail = p.Title
		}
		return nil, &listError{status: rec.Code, detail: p.Detail}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		return nil, fmt.Errorf("console: list %s: %w", path, err)
	}
	var m struct {
		MissingNodes []string `json:"missing_nodes"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		return nil, fmt.Errorf("console: list %s: %w", path, err)
	}
	return m.MissingNodes, nil
}

// stateRow is one field of a device's state table.
type stateRow struct {
	Field             string
	Reported, Desired string
	HasDesired        bool
	Pending           bool
	ReportedAt        time.Time
	DesiredAt         time.Time
}

// editorRow is one field of the desired-state editor.
type editorRow struct {
	Field       string
	Value       string
	Placeholder string
	// Text says the value is taken as text, not JSON (its box ticked).
	Text bool
	// Error says why the value typed could not be used.
	Error string
	// Refused is the device's reason for refusing the desired value
	// (reported.error.<field>); Unknown says the device has reported
	// since the field was desired without ever reporting it.
	Refused string
	Unknown bool
}

// newFieldRow is the editor's row that adds a field.
type newFieldRow struct {
	Field, Value string
	Text         bool
	Error        string
}

// notDesired are reported fields the editor does not offer: they are the
// device's to say (error) or set by rollouts (firmware).
var notDesired = map[string]bool{"error": true, "firmware": true}

// eventRow is one event of a device.
type eventRow struct {
	Time   time.Time
	Kind   string
	Fields []kv
}

type deviceData struct {
	Doc       shadow.Doc
	Anomalous bool
	// DesiredStamp identifies the desired state the editor shows, so
	// that applying it fails if someone changed desired state meanwhile,
	// but not when only the device's reports changed.
	DesiredStamp string
	Rows         []stateRow
	Delta        []kv
	Errors       []kv
	Editor       []editorRow
	NewField     newFieldRow
	// EditorKept says the editor shows what was typed, not the desired
	// state: after an error or a conflict.
	EditorKept bool
	Anomalies  []api.AnomalyRecord
	Charts     []chart
	Events     []eventRow
	Source     string
	Err        string
}

// chartPoints is how many recent messages the telemetry charts draw from.
const chartPoints = 240

func (s *Server) devicePage(w http.ResponseWriter, r *http.Request) {
	s.renderDevice(w, r, http.StatusOK, r.URL.Query().Get("notice"), nil, nil)
}

// renderDevice renders the device page (or the part asked for) with the
// notice of code; with form, the editor keeps what the form held and
// shows errs by field (see keepTyped).
func (s *Server) renderDevice(w http.ResponseWriter, r *http.Request, status int, code string, form url.Values, errs map[string]string) {
	sess := sessionOf(r.Context())
	id := r.PathValue("id")
	doc, err := s.api.Device(r.Context(), sess.claims, id)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			status = http.StatusNotFound
		}
		if r.URL.Query().Get("part") != "" {
			http.Error(w, problemText(err), status)
			return
		}
		v := s.view(r, id, "devices", deviceData{Doc: shadow.Doc{ID: id}, Err: problemText(err)})
		s.renderView(w, r, status, "device", "layout", v)
		return
	}
	d := deviceData{Doc: doc, Anomalous: doc.Anomalous(0), DesiredStamp: desiredStamp(doc.Desired)}
	d.Rows = stateRows(&doc)
	d.Delta = flatten("", doc.Delta, nil)
	if e, ok := doc.Reported["error"].(map[string]any); ok {
		d.Errors = flatten("", e, nil)
	} else if e, ok := doc.Reported["error"].(string); ok && e != "" {
		d.Errors = []kv{{"", e}}
	}
	d.Editor = editorRows(&doc)
	if form != nil {
		keepTyped(&d, form, errs)
	}
	part := r.URL.Query().Get("part")
	now := s.cfg.Now()
	if part == "" || part == "anomalies" {
		as, _, err := s.api.Anomalies(r.Context(), sess.claims, api.AnomalyQuery{Range: api.RangeQuery{To: now.Add(time.Nanosecond), Limit: 10}, Device: id})
		if err == nil {
			d.Anomalies = as
		}
	}
	if part == "" || part == "charts" {
		h, err := s.api.DeviceHistory(r.Context(), sess.claims, id, api.RangeQuery{To: now.Add(time.Nanosecond), Limit: chartPoints})
		if err == nil {
			d.Source = h.Source
			for _, se := range telemetrySeries(id, h.Messages) {
				d.Charts = append(d.Charts, drawChart(se))
			}
		}
	}
	if part == "" || part == "events" {
		evs, _, err := s.api.DeviceEvents(r.Context(), sess.claims, id, api.RangeQuery{To: now.Add(time.Nanosecond), Limit: 10})
		if err == nil {
			for i := len(evs) - 1; i >= 0; i-- {
				d.Events = append(d.Events, eventOf(id, &evs[i]))
			}
		}
	}
	v := s.view(r, id, "devices", d)
	v.Events = "/live/devices/" + url.PathEscape(id)
	v.Notice = notices[code]
	if status != http.StatusOK {
		s.renderView(w, r, status, "device", "layout", v)
		return
	}
	s.renderPart(w, r, "device", v, "device.state", "device.editor", "device.charts", "device.events", "device.anomalies")
}

// stateRows lines reported and desired up field by field.
func stateRows(d *shadow.Doc) []stateRow {
	rep, des, delta := flatMap(d.Reported), flatMap(d.Desired), flatMap(d.Delta)
	fields := map[string]bool{}
	for k := range rep {
		fields[k] = true
	}
	for k := range des {
		fields[k] = true
	}
	var rows []stateRow
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		if f == "error" || strings.HasPrefix(f, "error.") {
			continue // shown as the device's complaint
		}
		top, _, _ := strings.Cut(f, ".")
		row := stateRow{Field: f, Reported: "—", ReportedAt: d.ReportedTS[top], DesiredAt: d.DesiredTS[top]}
		if v, ok := rep[f]; ok {
			row.Reported = v
		}
		if v, ok := des[f]; ok {
			row.Desired, row.HasDesired = v, true
		}
		_, row.Pending = delta[f]
		rows = append(rows, row)
	}
	return rows
}

// editorRows are the top-level fields the editor offers: those desired,
// and those the device reports that it may be asked to change.
func editorRows(d *shadow.Doc) []editorRow {
	refused := map[string]string{}
	if e, ok := d.Reported["error"].(map[string]any); ok {
		for k, v := range e {
			if s, ok := v.(string); ok {
				refused[k] = s
			} else if v != nil {
				refused[k] = editorValue(v)
			}
		}
	}
	var lastReport time.Time
	for _, t := range d.ReportedTS {
		if t.After(lastReport) {
			lastReport = t
		}
	}
	fields := map[string]bool{}
	for k := range d.Reported {
		if !notDesired[k] {
			fields[k] = true
		}
	}
	for k := range d.Desired {
		fields[k] = true
	}
	var rows []editorRow
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		row := editorRow{Field: f}
		if v, ok := d.Desired[f]; ok {
			row.Value = editorValue(v)
		}
		if v, ok := d.Reported[f]; ok {
			row.Placeholder = editorValue(v)
		} else if at, ok := d.DesiredTS[f]; ok && lastReport.After(at) {
			row.Unknown = true
		}
		if _, ok := d.Desired[f]; ok {
			row.Refused = refused[f]
		}
		rows = append(rows, row)
	}
	return rows
}

// editorValue is how the editor shows a value: as JSON, strings in
// quotes, so that it reads back as the same value.
func editorValue(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// errNotJSON is a value typed into the editor that is not JSON.
var errNotJSON = errors.New(`not valid JSON: type text in quotes ("eco"), or tick Text`)

// parseEntered reads a value typed into the editor: JSON (7, true, "eco",
// {"a":1}), or, with asText, the text itself as a string. Anything else
// is errNotJSON: abc and {bad json are not saved as strings by mistake.
func parseEntered(s string, asText bool) (any, error) {
	if asText {
		return s, nil
	}
	s = strings.TrimSpace(s)
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, errNotJSON
	}
	return v, nil
}

// validField reports whether name may be a desired field.
func validField(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// editorPatch builds the merge patch the editor's form asks for: each
// field whose entered value differs from the desired one, an emptied
// field as null (removed), and the new field if named. Values that are
// not JSON (nor ticked as text) are in errs, by field ("" for the new
// field): then nothing is to be saved.
func editorPatch(form url.Values, desired map[string]any) (patch map[string]any, errs map[string]string, err error) {
	patch, errs = map[string]any{}, map[string]string{}
	for key, vals := range form {
		field, ok := strings.CutPrefix(key, "f:")
		if !ok || len(vals) == 0 {
			continue
		}
		if !validField(field) {
			return nil, nil, errBadField
		}
		cur, has := desired[field]
		asText := form.Get("t:"+field) != ""
		entered := vals[0]
		switch {
		case strings.TrimSpace(entered) == "" && !asText && has:
			patch[field] = nil
		case strings.TrimSpace(entered) == "" && !asText:
		default:
			v, perr := parseEntered(entered, asText)
			if perr != nil {
				errs[field] = perr.Error()
				continue
			}
			if !has || !shadow.Equal(v, cur) {
				patch[field] = v
			}
		}
	}
	if name := strings.TrimSpace(form.Get("new_field")); name != "" {
		if !validField(name) {
			return nil, nil, errBadField
		}
		asText := form.Get("new_text") != ""
		if v := form.Get("new_value"); strings.TrimSpace(v) != "" || asText {
			pv, perr := parseEntered(v, asText)
			if perr != nil {
				errs[""] = perr.Error()
			} else {
				patch[name] = pv
			}
		}
	}
	return patch, errs, nil
}

// keepTyped puts what the form held into the editor rows of d, with the
// errors of its values: after a refused value or a conflict the page
// shows what was typed, not the desired state, so nothing is lost.
func keepTyped(d *deviceData, form url.Values, errs map[string]string) {
	d.EditorKept = true
	seen := map[string]bool{}
	for i := range d.Editor {
		row := &d.Editor[i]
		seen[row.Field] = true
		if vals, ok := form["f:"+row.Field]; ok && len(vals) > 0 {
			row.Value, row.Text, row.Error = vals[0], form.Get("t:"+row.Field) != "", errs[row.Field]
		}
	}
	for key, vals := range form {
		field, ok := strings.CutPrefix(key, "f:")
		if !ok || seen[field] || len(vals) == 0 || !validField(field) {
			continue
		}
		d.Editor = append(d.Editor, editorRow{Field: field, Value: vals[0], Text: form.Get("t:"+field) != "", Error: errs[field]})
	}
	d.NewField = newFieldRow{Field: form.Get("new_field"), Value: form.Get("new_value"), Text: form.Get("new_text") != "", Error: errs[""]}
}

var errBadField = errors.New("console: field names are 1 to 128 characters, no control characters")

// notices are the messages a page shows after a change, by code.
var notices = map[string]*notice{
	"applied":   {"ok", "Desired state saved and sent to the device. The delta clears as the device reports back."},
	"nothing":   {"warn", "Nothing to change: the values entered are the desired state already."},
	"conflict":  {"error", "The desired state changed while you were editing; nothing was applied. What you typed is kept below, beside the current state: review it and apply again."},
	"notjson":   {"error", "Nothing was saved: some values are not valid JSON (marked below). Type text in quotes, or tick Text."},
	"forbidden": {"error", "Your role does not allow changing desired state."},
	"readonly":  {"error", "This node follows the desired state its core sets; change it on the core."},
	"notsent":   {"warn", "Desired state saved, but the delta could not be sent to the device. Apply again to resend it."},
	"invalid":   {"error", "Field names are 1 to 128 characters without control characters."},
	"failed":    {"error", "The change failed; the node's log has the details."},
}

// desiredStamp is a short digest of a desired state.
func desiredStamp(desired map[string]any) string {
	b, _ := json.Marshal(desired) // object keys sorted
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// desiredForm takes the editor's form: the fields whose values differ from
// the desired state the editor showed become a merge patch, applied if
// that desired state is still current.
func (s *Server) desiredForm(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r.Context())
	id := r.PathValue("id")
	back := func(code string) {
		http.Redirect(w, r, "/devices/"+url.PathEscape(id)+"?notice="+code, http.StatusSeeOther)
	}
	if !sess.claims.Role.Allows(certs.RoleOperator) {
		back("forbidden")
		return
	}
	seen := r.PostForm.Get("desired")
	if seen == "" {
		http.Error(w, "bad form: no desired state stamp", http.StatusBadRequest)
		return
	}
	// Reports of the device bump the shadow's version too: a few tries
	// tell them apart from a change of desired state.
	for range 3 {
		doc, err := s.api.Device(r.Context(), sess.claims, id)
		if err != nil {
			http.Error(w, problemText(err), http.StatusNotFound)
			return
		}
		if desiredStamp(doc.Desired) != seen {
			// What was typed stays on the page, beside the new state.
			s.renderDevice(w, r, http.StatusConflict, "conflict", r.PostForm, nil)
			return
		}
		patch, errs, err := editorPatch(r.PostForm, doc.Desired)
		if err != nil {
			back("invalid")
			return
		}
		if len(errs) > 0 {
			s.renderDevice(w, r, http.StatusUnprocessableEntity, "notjson", r.PostForm, errs)
			return
		}
		if len(patch) == 0 {
			back("nothing")
			return
		}
		b, err := json.Marshal(patch)
		if err != nil {
			back("failed")
			return
		}
		_, err = s.api.SetDesired(r.Context(), sess.claims, id, b, &doc.Version)
		switch {
		case err == nil:
			back("applied")
		case errors.Is(err, store.ErrVersion):
			continue
		case errors.Is(err, api.ErrDesiredReadOnly):
			back("readonly")
		case errors.Is(err, shadow.ErrDeltaNotSent):
			back("notsent")
		case errors.Is(err, store.ErrNotFound):
			http.Error(w, problemText(err), http.StatusNotFound)
		default:
			s.log.Error("desired state not set", "device", id, "err", err)
			back("failed")
		}
		return
	}
	s.renderDevice(w, r, http.StatusConflict, "conflict", r.PostForm, nil)
}

func eventOf(id string, m *store.Message) eventRow {
	kind := strings.TrimPrefix(strings.TrimPrefix(m.Headers["mqtt_topic"], "devices/"+id+"/events"), "/")
	if kind == "" {
		kind = "event"
	}
	ev := eventRow{Time: m.Timestamp, Kind: kind}
	dec := json.NewDecoder(bytes.NewReader(m.Value))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err == nil {
		if o, ok := v.(map[string]any); ok {
			ev.Fields = flatten("", o, nil)
			return ev
		}
		ev.Fields = []kv{{"", displayValue(v)}}
		return ev
	}
	text := string(m.Value)
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	ev.Fields = []kv{{"", strings.ToValidUTF8(text, "�")}}
	return ev
}

func (s *Server) edgesPage(w http.ResponseWriter, r *http.Request) {
	type data struct {
		Edges      []api.EdgeStatus
		HasLinks   bool
		Err        string
		HasCluster bool
		Nodes      []cluster.NodeState
		ClusterErr string
		Missing    []string
	}
	d := data{HasLinks: s.api.HasLinks(), HasCluster: s.cfg.Cluster != nil}
	var err error
	if d.Edges, d.Missing, err = s.listEdges(r); err != nil {
		d.Err = problemText(err)
	}
	if d.HasCluster {
		if d.Nodes, err = s.cfg.Cluster(r.Context()); err != nil {
			d.ClusterErr = err.Error()
		}
	}
	v := s.view(r, "Edges", "edges", d)
	v.Events = "/live/fleet"
	s.renderPart(w, r, "edges", v, "edges.live")
}

func (s *Server) anomaliesPage(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r.Context())
	q := r.URL.Query()
	type data struct {
		Device, Edge string
		Rows         []api.AnomalyRecord
		More         bool
		Err          string
	}
	d := data{Device: strings.TrimSpace(q.Get("device")), Edge: strings.TrimSpace(q.Get("edge"))}
	var err error
	d.Rows, d.More, err = s.api.Anomalies(r.Context(), sess.claims, api.AnomalyQuery{
		Range:  api.RangeQuery{To: s.cfg.Now().Add(time.Nanosecond), Limit: 200},
		Device: d.Device, Edge: d.Edge,
	})
	if err != nil {
		d.Err = problemText(err)
	}
	v := s.view(r, "Anomalies", "anomalies", d)
	v.Events = "/live/fleet"
	s.renderPart(w, r, "anomalies", v, "anomalies.live")
}

// auditRow is one audit record as the audit page shows it.
type auditRow struct {
	api.AuditRecord
	Fields []kv
	// Device is the device whose shadow the record is about, if any.
	Device string
}

// auditPageSize is how many records a page of the audit page shows.
const auditPageSize = 100

// auditTimeLayout is the layout of the audit page's from and to fields
// (an <input type="datetime-local">, read as UTC).
const auditTimeLayout = "2006-01-02T15:04"

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r.Context())
	q := r.URL.Query()
	type data struct {
		Subject, Object, Action, Device, From, To string
		Filtered                                  bool
		Rows                                      []auditRow
		More                                      bool
		// Older is the link to the next page, older records; Newest
		// the first page of the same filters, shown on later pages.
		Older, Newest string
		Err           string
	}
	d := data{Subject: strings.TrimSpace(q.Get("subject")), Object: strings.TrimSpace(q.Get("object")),
		Action: strings.TrimSpace(q.Get("action")), Device: strings.TrimSpace(q.Get("device")),
		From: strings.TrimSpace(q.Get("from")), To: strings.TrimSpace(q.Get("to"))}
	d.Filtered = d.Subject != "" || d.Object != "" || d.Action != "" || d.Device != "" || d.From != "" || d.To != ""
	if !sess.claims.Role.Allows(certs.RoleAdmin) || len(sess.claims.Scope) > 0 {
		// As GET /api/v1/audit: admins only, and not through a scope,
		// since audit records name every device.
		v := s.view(r, "Audit", "audit", d)
		v.Session.IsAdmin = false
		s.renderView(w, r, http.StatusForbidden, "audit", "layout", v)
		return
	}
	aq := api.AuditQuery{
		RangeQuery: api.RangeQuery{To: s.cfg.Now().Add(time.Nanosecond), Limit: auditPageSize, Latest: d.To == "" && d.From == ""},
		Subject:    d.Subject, Object: d.Object, Device: d.Device, Cursor: q.Get("cursor"), NewestFirst: true,
	}
	for a := range strings.SplitSeq(d.Action, ",") {
		if a = strings.TrimSpace(a); a != "" {
			aq.Actions = append(aq.Actions, a)
		}
	}
	var err error
	parseTime := func(name, v string, dst *time.Time) {
		if v == "" || err != nil {
			return
		}
		t, perr := time.Parse(auditTimeLayout, v)
		if perr != nil {
			t, perr = time.Parse(time.RFC3339, v)
		}
		if perr != nil {
			err = fmt.Errorf("%s %q: want a time like 2026-03-01T10:00 (UTC)", name, v)
			return
		}
		*dst = t.UTC()
	}
	parseTime("From", d.From, &aq.From)
	parseTime("To", d.To, &aq.To)
	if err == nil && !aq.From.IsZero() && !aq.From.Before(aq.To) {
		err = errors.New("from must be before to")
	}
	var page api.AuditResponse
	if err != nil {
		d.Err = err.Error() + "."
	} else if page, err = s.api.AuditLog(r.Context(), aq); err != nil {
		d.Err = problemText(err)
		if errors.Is(err, store.ErrInvalid) {
			d.Err = "That page link is out of date; start again from the newest records."
		}
	}
	filters := url.Values{}
	for k, v := range map[string]string{"subject": d.Subject, "object": d.Object, "action": d.Action, "device": d.Device, "from": d.From, "to": d.To} {
		if v != "" {
			filters.Set(k, v)
		}
	}
	d.More = page.More
	if page.More {
		older := url.Values{}
		for k, v := range filters {
			older[k] = v
		}
		older.Set("cursor", page.Next)
		d.Older = "/audit?" + older.Encode()
	}
	if q.Get("cursor") != "" {
		d.Newest = "/audit"
		if len(filters) > 0 {
			d.Newest += "?" + filters.Encode()
		}
	}
	recs := page.Records
	for i := len(recs) - 1; i >= 0; i-- {
		row := auditRow{AuditRecord: recs[i]}
		var detail any
		dec := json.NewDecoder(bytes.NewReader(recs[i].Detail))
		dec.UseNumber()
		if len(recs[i].Detail) > 0 && dec.Decode(&detail) == nil {
			if o, ok := detail.(map[string]any); ok {
				row.Fields = flatten("", o, nil)
			} else {
				row.Fields = []kv{{"", displayValue(detail)}}
			}
		}
		if id, ok := strings.CutPrefix(recs[i].Object, store.ShadowsTable+"/"); ok {
			row.Device = id
		}
		d.Rows = append(d.Rows, row)
	}
	s.render(w, r, http.StatusOK, "audit", "Audit", d, "")
}
