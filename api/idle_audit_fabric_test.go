package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/internal/testenv"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/wire"
)

// auditCount is how many audit records a node's API lists.
func auditCount(t *testing.T, base, token string) int {
	t.Helper()
	n, cursor := 0, ""
	for {
		url := base + "/api/v1/audit?limit=10000"
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		st, b := call(t, "GET", url, token)
		if st != http.StatusOK {
			t.Fatalf("audit: %d %s", st, b)
		}
		var page api.AuditResponse
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		n += len(page.Records)
		if !page.More {
			return n
		}
		cursor = page.Next
	}
}

// TestIdleMirrorsWriteNoAudit: an edge mirroring /models and /firmware
// from its core, as weft up sets it up, asking every 10ms, writes no audit
// record on either node while nothing changes: an hour of the default
// 5s interval is 720 rounds.
func TestIdleMirrorsWriteNoAudit(t *testing.T) {
	f := testenv.New(t)
	c := f.StartCore("core-1", core.Config{})
	cfg := edge.Config{Core: c.SyncAddr().String(), Mirrors: []mirror.Spec{{Volume: "models", Dir: wire.Down}, {Volume: "firmware", Dir: wire.Down}}}
	cfg.Link.MirrorInterval = 10 * time.Millisecond
	e := f.StartEdge("edge-1", cfg)
	admin, err := certs.IssueToken(f.Auth.TokenKey, certs.TokenClaims{Subject: "root", Role: certs.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	coreURL, edgeURL := "http://"+c.HTTPAddr().String(), "http://"+e.HTTPAddr().String()

	// A file in /models reaches the edge: the mirrors run.
	ctx := context.Background()
	if _, err := c.Store().File("/models/readme.txt").Write(ctx, strings.NewReader("v1")); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 30*time.Second, "the mirrored file at the edge", func() bool {
		_, err := e.Store().Stat(ctx, "/models/readme.txt")
		return err == nil
	})
	// Settled: the edge's records of publishing both mirrors have come
	// up its link to the core (the edge's audit stream is replicated), and
	// what the change and its mirroring recorded is there.
	wait.For(t, 30*time.Second, "the edge's mirror records at the core", func() bool {
		st, b := call(t, "GET", coreURL+"/api/v1/audit?action=mirror.publish&limit=100", admin)
		var page api.AuditResponse
		if st != http.StatusOK || json.Unmarshal(b, &page) != nil {
			t.Fatalf("audit: %d %s", st, b)
		}
		seen := map[string]bool{}
		for _, r := range page.Records {
			if r.Node == "edge-1" {
				seen[r.Object] = true
			}
		}
		return seen["/models"] && seen["/firmware"]
	})
	var before [2]int
	wait.For(t, 30*time.Second, "the audit trails to settle", func() bool {
		now := [2]int{auditCount(t, coreURL, admin), auditCount(t, edgeURL, admin)}
		same := now == before
		before = now
		return same
	})
	// 720 rounds and more: no new record.
	start := time.Now()
	rounds := 720
	wait.For(t, time.Minute, fmt.Sprintf("%d idle mirror rounds", rounds), func() bool {
		if got := [2]int{auditCount(t, coreURL, admin), auditCount(t, edgeURL, admin)}; got != before {
			t.Fatalf("idle mirrors wrote audit records: core %d -> %d, edge %d -> %d", before[0], got[0], before[1], got[1])
		}
		return time.Since(start) > time.Duration(rounds)*cfg.Link.MirrorInterval
	})
}
