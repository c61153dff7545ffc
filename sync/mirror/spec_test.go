package mirror

import (
	"strings"
	"testing"

	"github.com/weft-io/weft/sync/wire"
)

// TestParseSpec: mirrors that can work are read; those that never can
// (a node's own volumes, models going up) are refused when added, not at
// run time.
func TestParseSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Spec
		err  string
	}{
		{"core:/models", Spec{Volume: "models", Dir: wire.Down}, ""},
		{"/firmware", Spec{Volume: "firmware", Dir: wire.Down}, ""},
		{"up:/training", Spec{Volume: "training", Dir: wire.Up}, ""},
		{"core:/telemetry", Spec{}, "node's own volume"},
		{"up:/uplink", Spec{}, "node's own volume"},
		{"up:/models", Spec{}, "comes down from the core"},
		{"core:/a/b", Spec{}, "want core:/<volume>"},
		{"up:/", Spec{}, "want core:/<volume>"},
	} {
		got, err := ParseSpec(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseSpec(%q) = %v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseSpec(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}
