package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weft-io/weft/certs"
)

//go:embed templates static
var assets embed.FS

// pageNames are the templates/<name>.html files, each rendered inside
// templates/layout.html.
var pageNames = []string{"signin", "overview", "devices", "device", "edges", "anomalies", "audit"}

// templates holds one template set per page.
type templates struct {
	pages map[string]*template.Template
}

func parseTemplates() (*templates, error) {
	t := &templates{pages: map[string]*template.Template{}}
	for _, name := range pageNames {
		p, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		t.pages[name] = p
	}
	return t, nil
}

// view is what every page template gets.
type view struct {
	Product string
	Node    string
	Title   string
	Nav     string
	Session *sessionView
	// Events is the page's event stream, if it has live regions.
	Events string
	// Refresh, if set, is where the page moves on to by itself.
	Refresh string
	Notice  *notice
	Data    any
}

// sessionView is the signed-in visitor, as pages show it.
type sessionView struct {
	Subject    string
	Role       string
	Scope      string
	CSRF       string
	CanOperate bool
	IsAdmin    bool
	// DesiredReadOnly says the node follows desired state set elsewhere
	// (an edge linked to its core): the editor is not offered.
	DesiredReadOnly bool
	// CoreAway says, on such an edge, that its link to the core is not up
	// (since CoreSince, if known).
	CoreAway  bool
	CoreSince time.Time
}

// notice is a message shown at the top of a page after a change.
type notice struct {
	Kind string // ok, warn, error
	Text string
}

func (s *Server) view(r *http.Request, title, nav string, data any) *view {
	v := &view{Product: s.cfg.Title, Node: s.st.Name(), Title: title, Nav: nav, Data: data}
	if sess := sessionOf(r.Context()); sess != nil {
		c := sess.claims
		var scope []string
		for _, k := range slices.Sorted(maps.Keys(c.Scope)) {
			scope = append(scope, k+"="+c.Scope[k])
		}
		v.Session = &sessionView{
			Subject: c.Subject, Role: string(c.Role), Scope: strings.Join(scope, ", "), CSRF: sess.csrf,
			CanOperate: c.Role.Allows(certs.RoleOperator), IsAdmin: c.Role.Allows(certs.RoleAdmin),
			DesiredReadOnly: s.api.DesiredReadOnly(),
		}
		if v.Session.DesiredReadOnly {
			if l, ok := s.api.CoreLink(r.Context()); ok && l.State != "up" {
				v.Session.CoreAway, v.Session.CoreSince = true, l.LastContact
			}
		}
	}
	return v
}

// render writes a whole page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page, title string, data any, refresh string) {
	v := s.view(r, title, page, data)
	v.Refresh = refresh
	s.renderView(w, r, status, page, "layout", v)
}

// renderView executes one template of a page's set into a buffer, then
// writes it: a failing template is a clean 500, not half a page.
func (s *Server) renderView(w http.ResponseWriter, r *http.Request, status int, page, tmpl string, v *view) {
	var buf bytes.Buffer
	if err := s.pages.pages[page].ExecuteTemplate(&buf, tmpl, v); err != nil {
		s.log.Error("page not rendered", "page", page, "template", tmpl, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

var funcs = template.FuncMap{
	"ago":      ago,
	"stamp":    stamp,
	"value":    displayValue,
	"score":    formatScore,
	"scorePct": scorePct,
	"pct":      pct,
	"count":    formatCount,
	"add":      func(a, b int) int { return a + b },
	"sub":      func(a, b int) int { return a - b },
}

// ago says how long ago t was, in words.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "just now"
	case d < 2*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

// stamp is a time in full, UTC.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

// displayValue shows a decoded JSON value: text as it is, numbers and
// booleans as JSON writes them, null as a dash, anything else as compact
// JSON.
func displayValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "—"
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func formatScore(p *float64) string {
	if p == nil {
		return "—"
	}
	return strconv.FormatFloat(*p, 'f', 2, 64)
}

func scorePct(p *float64) int {
	if p == nil {
		return 0
	}
	return int(math.Round(math.Max(0, math.Min(1, *p)) * 100))
}

func pct(a, b int) int {
	if b == 0 {
		return 0
	}
	return int(math.Round(float64(a) * 100 / float64(b)))
}

// formatCount writes n with thin thousands separators.
func formatCount(n int) string {
	s := strconv.Itoa(n)
	if n < 10000 && n > -10000 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre == 0 {
		pre = 3
	}
	b.WriteString(s[:pre])
	for i := pre; i < len(s); i += 3 {
		b.WriteString("\u202f" + s[i:i+3])
	}
	return b.String()
}
