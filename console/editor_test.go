package console

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// TestEditorErrors: values that are not JSON are refused inline and
// nothing is saved, what was typed stays; text is taken as text only
// when ticked; fields the device refused or does not know are marked.
func TestEditorErrors(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	report(t, e.st, "pump-1", "pump", `{"setpoint":4}`)
	b := e.browser()
	b.signIn(e.token(certs.RoleOperator, nil))
	page := b.get("/devices/pump-1", 200)
	form := func(page string, kv ...string) url.Values {
		f := url.Values{"csrf": {csrfOf(t, page)}, "desired": {stampOf(t, page)}}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}

	for _, typed := range []string{"abc", "{bad json", "1 2"} {
		resp, body := b.do("POST", "/devices/pump-1/desired", form(page, "f:setpoint", typed, "new_field", "mode", "new_value", "eco"), nil)
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("%q: %d", typed, resp.StatusCode)
		}
		if !strings.Contains(body, "Nothing was saved") || strings.Count(body, "not valid JSON") < 2 ||
			!strings.Contains(body, `value="`+htmlAttr(typed)+`"`) || !strings.Contains(body, `value="eco"`) || !strings.Contains(body, `aria-invalid="true"`) {
			t.Fatalf("%q: page %s", typed, body)
		}
		if d, _ := shadow.Get(ctx, e.st, "pump-1"); len(d.Desired) != 0 {
			t.Fatalf("%q saved: %v", typed, d.Desired)
		}
	}
	// Quoted, or ticked as text: a string.
	resp, _ := b.do("POST", "/devices/pump-1/desired", form(page, "f:setpoint", "6", "new_field", "mode", "new_value", "eco", "new_text", "1"), nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("apply: %d", resp.StatusCode)
	}
	page = b.get("/devices/pump-1", 200)
	resp, _ = b.do("POST", "/devices/pump-1/desired", form(page, "f:mode", `"{bad json"`, "f:setpoint", "6"), nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("apply quoted: %d", resp.StatusCode)
	}
	d, _ := shadow.Get(ctx, e.st, "pump-1")
	if !shadow.Equal(d.Desired, map[string]any{"setpoint": 6.0, "mode": "{bad json"}) {
		t.Fatalf("desired %v", d.Desired)
	}

	// The device refuses setpoint and says nothing of mode: both marked
	// (the report is stamped after the desired change).
	rep, _ := json.Marshal(map[string]any{"setpoint": 4, "error": map[string]any{"setpoint": "6 is outside 0..5"}})
	if _, err := shadow.Report(ctx, e.st, "pump-1", rep, shadow.Source{Class: "pump"}, time.Now().Add(time.Second), nil); err != nil {
		t.Fatal(err)
	}
	page = b.get("/devices/pump-1", 200)
	if !strings.Contains(page, "Refused by the device: 6 is outside 0..5") || !strings.Contains(page, "does not know this field") {
		t.Fatalf("marks: %s", page)
	}
}

// htmlAttr is s as html/template writes it in an attribute.
func htmlAttr(s string) string { return strings.ReplaceAll(s, `"`, "&#34;") }

// coreLink is a node's one link, to its core, in the given state.
type coreLink struct{ state string }

func (c coreLink) Links(context.Context) []api.LinkStatus {
	return []api.LinkStatus{{Peer: "core-1", Role: certs.CoreNode, State: c.state, LastContact: time.Now().Add(-time.Hour)}}
}

// TestEditorOnEdge: an edge linked to its core offers no editor, and
// says whether the core is away.
func TestEditorOnEdge(t *testing.T) {
	for _, state := range []string{"up", "down"} {
		st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		pub, priv, _ := ed25519.GenerateKey(nil)
		a, err := api.New(api.Config{Store: st, TokenKey: pub, DesiredReadOnly: true, Links: coreLink{state}})
		if err != nil {
			t.Fatal(err)
		}
		con, err := New(Config{API: a})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(con)
		e := &env{t: t, st: st, con: con, url: ts.URL, priv: priv}
		report(t, st, "pump-1", "pump", `{"setpoint":4}`)
		b := e.browser()
		b.signIn(e.token(certs.RoleAdmin, nil))
		page := b.get("/devices/pump-1", 200)
		away := strings.Contains(page, "The core is away")
		if strings.Contains(page, `id="apply"`) || !strings.Contains(page, `id="desired-readonly"`) || away != (state == "down") {
			t.Fatalf("link %s: %s", state, page)
		}
		ts.Close()
		st.Close()
	}
}
