package certs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIssueDevices(t *testing.T) {
	a := newAuthority(t)
	got, err := a.IssueDevices([]string{"d1", "d2", "d3"}, "pump", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := a.List()
	if len(got) != 3 || len(entries) != 3 {
		t.Fatalf("issued %d, indexed %d", len(got), len(entries))
	}
	for i, iss := range got {
		cert, err := parseCertPEM(iss.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		id, err := DeviceIdentity(cert, time.Now())
		if err != nil || id.ID != entries[i].ID || id.Class != "pump" {
			t.Fatalf("device %d: %+v %v", i, id, err)
		}
	}
	if _, err := a.IssueDevices([]string{"ok", "bad/id"}, "pump", time.Hour); err == nil {
		t.Fatal("an invalid id was issued")
	}
	if entries, _ := a.List(); len(entries) != 3 {
		t.Fatalf("a failed batch left %d entries", len(entries))
	}
}

func TestEnsure(t *testing.T) {
	a := newAuthority(t)
	for i := 0; i < 2; i++ {
		if err := a.EnsureGateway("gw", []string{"127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
		if err := a.EnsureNode(CoreNode, "core", []string{"127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := a.List(); len(entries) != 2 {
		t.Fatalf("issued %d certificates, want 2 (once each)", len(entries))
	}
}

func TestServingPair(t *testing.T) {
	a := newAuthority(t)
	if _, _, err := a.ServingPair(Identity{Kind: KindGateway, Name: "gw"}); err == nil || !strings.Contains(err.Error(), "weft certs issue gateway") {
		t.Fatalf("missing gateway certificate: %v", err)
	}
	if err := a.EnsureGateway("gw", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if pair, pool, err := a.ServingPair(Identity{Kind: KindGateway, Name: "gw"}); err != nil || pair == nil || pool == nil {
		t.Fatalf("gateway pair: %v", err)
	}
	if err := a.EnsureNode(EdgeNode, "e1", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.ServingPair(Identity{Kind: KindNode, Role: EdgeNode, Name: "e1"}); err != nil {
		t.Fatalf("node pair: %v", err)
	}
	a.FabricCA = nil
	if _, _, err := a.ServingPair(Identity{Kind: KindNode, Role: EdgeNode, Name: "e1"}); !errors.Is(err, ErrNoCA) {
		t.Fatalf("no fabric CA: %v", err)
	}
}
