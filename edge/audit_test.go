package edge

import (
	"context"
	"testing"
	"time"
)

// TestAuditRetention: the edge gives its audit volume the retention of
// its config.
func TestAuditRetention(t *testing.T) {
	n, _ := startTestEdge(t, context.Background(), func(c *Config) { c.AuditRetention = 72 * time.Hour })
	vi, err := n.Store().Volume("audit")
	if err != nil {
		t.Fatal(err)
	}
	if vi.TTL != 72*time.Hour {
		t.Fatalf("the audit volume's TTL is %s, want 72h", vi.TTL)
	}
}
