package alarm

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// offlineDevices are the devices of this edge that sent nothing for
// DeviceOfflineAfter: last seen (connect, disconnect, report) that long
// ago and, for a device still connected, no message in its by_device
// history since either.
func (e *Engine) offlineDevices(ctx context.Context, set Settings, now time.Time) (out, expiring []Condition, err error) {
	after := time.Duration(set.DeviceOfflineAfter)
	var parts int
	cursor := ""
	for {
		docs, next, err := e.st.Table(store.ShadowsTable).Scan(ctx, "", cursor, 1000)
		if err != nil {
			return nil, nil, err
		}
		for _, doc := range docs {
			d, err := shadow.Parse(doc)
			if err != nil || d.LastSeen.IsZero() || (d.Edge != "" && d.Edge != e.name) {
				continue
			}
			if c, ok := deviceCertExpiring(d, set, now, e.name); ok {
				expiring = append(expiring, c)
			}
			last := d.LastSeen
			if now.Sub(last) < after {
				continue
			}
			if d.Connected {
				if parts == 0 {
					info, err := e.st.Stat(ctx, store.ByDeviceStream)
					if err != nil {
						return nil, nil, err
					}
					parts = max(info.Partitions, 1)
				}
				if t, err := e.lastMessage(ctx, d.ID, parts); err != nil {
					return nil, nil, err
				} else if t.After(last) {
					last = t
				}
				if now.Sub(last) < after {
					continue
				}
			}
			out = append(out, Condition{Key: keyOf(DeviceOffline, d.ID), Type: DeviceOffline, Severity: Major, Device: d.ID, Edge: e.name,
				Details: jsonOf(map[string]any{"last_seen": last, "connected": d.Connected, "class": d.Class, "after": set.DeviceOfflineAfter})})
		}
		if next == "" {
			return out, expiring, nil
		}
		cursor = next
	}
}

// deviceCertExpiring is the cert_expiring condition of a device whose
// certificate (as it last connected with it) expires within
// CertExpiryWithin, or has expired.
func deviceCertExpiring(d shadow.Doc, set Settings, now time.Time, edge string) (Condition, bool) {
	if d.CertExpires.IsZero() {
		return Condition{}, false
	}
	left := d.CertExpires.Sub(now)
	if left > time.Duration(set.CertExpiryWithin) {
		return Condition{}, false
	}
	sev := Warning
	switch {
	case left <= 0:
		sev = Critical
	case left < 7*24*time.Hour:
		sev = Major
	}
	return Condition{Key: keyOf(CertExpiring, "device", d.ID), Type: CertExpiring, Severity: sev, Device: d.ID, Edge: edge,
		Details: jsonOf(map[string]any{"device": d.ID, "class": d.Class, "not_after": d.CertExpires.UTC()})}, true
}

// lastMessage is the time of the device's latest message in by_device.
func (e *Engine) lastMessage(ctx context.Context, device string, parts int) (time.Time, error) {
	st := e.st.Stream(store.ByDeviceStream)
	var last time.Time
	for p := range parts {
		low, next, err := st.Bounds(ctx, device, p)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return last, err
		}
		if next <= low {
			continue
		}
		msgs, err := st.Read(ctx, device, p, next-1, store.ReadOptions{Limit: 1})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return last, err
		}
		if len(msgs) > 0 && msgs[0].Timestamp.After(last) {
			last = msgs[0].Timestamp
		}
	}
	return last, nil
}

// downLinks are the links down for LinkDownAfter.
func (e *Engine) downLinks(set Settings, now time.Time) []Condition {
	var out []Condition
	for _, l := range e.cfg.Links() {
		if l.Up || now.Sub(l.Since) < time.Duration(set.LinkDownAfter) {
			continue
		}
		edge := l.Peer // at the core: the edge whose link is down
		if e.cfg.Edge {
			edge = e.name
		}
		out = append(out, Condition{Key: keyOf(LinkDown, l.Peer), Type: LinkDown, Severity: Major, Edge: edge,
			Details: jsonOf(map[string]any{"peer": l.Peer, "node": e.name, "since": l.Since, "after": set.LinkDownAfter})})
	}
	return out
}

// lowDisks are the node's data file system and the volumes with a quota
// (and no drop-oldest policy, which never refuses writes) whose free
// space is below DiskFreeBelow percent.
func (e *Engine) lowDisks(set Settings) ([]Condition, error) {
	var out []Condition
	low := func(key, what string, free, total int64) {
		if total <= 0 {
			return
		}
		pct := float64(free) * 100 / float64(total)
		if pct >= set.DiskFreeBelow {
			return
		}
		sev := Major
		if pct < set.DiskFreeBelow/2 {
			sev = Critical
		}
		out = append(out, Condition{Key: key, Type: DiskLow, Severity: sev, Edge: e.nodeEdge(),
			Details: jsonOf(map[string]any{"node": e.name, "what": what, "free_bytes": free, "total_bytes": total,
				"free_percent": float64(int(pct*10)) / 10, "below": set.DiskFreeBelow})})
	}
	if e.cfg.DataDir != "" {
		free, total, err := e.cfg.Statfs(e.cfg.DataDir)
		if err != nil {
			return nil, err
		}
		low(keyOf(DiskLow, "data"), e.cfg.DataDir, free, total)
	}
	for _, v := range e.st.Volumes() {
		if v.Quota > 0 && !v.DropOldest {
			low(keyOf(DiskLow, "volume", v.Name), "/"+v.Name, max(v.Quota-v.Used, 0), v.Quota)
		}
	}
	return out, nil
}

// missingCerts are the node's certificate files that cannot be read
// (deleted while it runs, say): the node works on with what it loaded,
// and will not start again without them.
func (e *Engine) missingCerts() []Condition {
	var out []Condition
	for _, f := range e.cfg.CertFiles {
		if _, err := os.ReadFile(f); err != nil {
			out = append(out, Condition{Key: keyOf(CertMissing, filepath.Base(f)), Type: CertMissing, Severity: Critical, Edge: e.nodeEdge(),
				Details: jsonOf(map[string]any{"node": e.name, "file": f, "error": err.Error()})})
		}
	}
	return out
}

// damagedStreams are the streams that gave up records as damaged
// (quarantined here, or gaps a replicated source quarantined): a fact
// that stays, so its alarm stays until acknowledged; a new quarantine in
// the stream updates it.
func (e *Engine) damagedStreams(ctx context.Context) ([]Condition, error) {
	var out []Condition
	var walk func(path string) error
	walk = func(path string) error {
		infos, err := e.st.List(ctx, path)
		if err != nil {
			return err
		}
		for _, in := range infos {
			switch {
			case in.Kind == store.KindDir || path == "/":
				if err := walk(in.Path); err != nil {
					return err
				}
			case in.Kind == store.KindStream && in.Quarantined > 0:
				out = append(out, Condition{Key: keyOf(StoreDamaged, in.Path), Type: StoreDamaged, Severity: Major, Edge: e.nodeEdge(),
					Details: jsonOf(map[string]any{"node": e.name, "stream": in.Path, "quarantined": in.Quarantined})})
			}
		}
		return nil
	}
	return out, walk("/")
}

// clockBehind is how far the system clock may lag the store's floor
// before it is an alarm (the store logs from 2 s); clockJump is the
// unconfirmed forward jump that is one (the store counts jumps beyond
// Config.ClockJump, 5 min by default, but keeps small differences left
// over at a restart unconfirmed too).
const (
	clockBehind = 2 * time.Second
	clockJump   = time.Minute
)

// clockTrouble is the store's clock trouble: the system clock behind the
// time floor (records are stamped with the floor meanwhile), or a forward
// jump that retention discounts until the core's time confirms it.
func (e *Engine) clockTrouble() []Condition {
	c := e.st.Clock()
	var out []Condition
	if c.Behind > clockBehind {
		out = append(out, Condition{Key: keyOf(Clock, "behind"), Type: Clock, Severity: Major, Edge: e.nodeEdge(),
			Details: jsonOf(map[string]any{"node": e.name, "behind": c.Behind.String(), "floor": c.Floor.UTC(), "system": c.System.UTC()})})
	}
	if c.Unconfirmed >= clockJump {
		out = append(out, Condition{Key: keyOf(Clock, "jump"), Type: Clock, Severity: Warning, Edge: e.nodeEdge(),
			Details: jsonOf(map[string]any{"node": e.name, "unconfirmed_jump": c.Unconfirmed.String(), "system": c.System.UTC()})})
	}
	return out
}

// expiringCerts are the node's certificates that expire within
// CertExpiryWithin (or have expired).
func (e *Engine) expiringCerts(set Settings, now time.Time) []Condition {
	var out []Condition
	for _, f := range e.cfg.CertFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // missingCerts reports it
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			continue
		}
		left := c.NotAfter.Sub(now)
		if left > time.Duration(set.CertExpiryWithin) {
			continue
		}
		sev := Warning
		switch {
		case left <= 0:
			sev = Critical
		case left < 7*24*time.Hour:
			sev = Major
		}
		out = append(out, Condition{Key: keyOf(CertExpiring, filepath.Base(f)), Type: CertExpiring, Severity: sev, Edge: e.nodeEdge(),
			Details: jsonOf(map[string]any{"node": e.name, "file": f, "subject": c.Subject.String(), "not_after": c.NotAfter.UTC()})})
	}
	return out
}

// haltedRollouts are the rollouts in state halted (firmware.Halted).
func (e *Engine) haltedRollouts(ctx context.Context) ([]Condition, error) {
	var out []Condition
	after := ""
	for {
		docs, next, err := e.st.Table(e.cfg.Rollouts).Scan(ctx, "", after, 1000)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			var r struct {
				ID         string `json:"id"`
				Release    string `json:"release"`
				Target     string `json:"target"`
				State      string `json:"state"`
				HaltReason string `json:"halt_reason"`
			}
			if json.Unmarshal(d.Value, &r) != nil || r.State != "halted" {
				continue
			}
			out = append(out, Condition{Key: keyOf(RolloutHalted, d.Key), Type: RolloutHalted, Severity: Major,
				Details: jsonOf(map[string]any{"rollout": d.Key, "release": r.Release, "target": r.Target, "reason": r.HaltReason})})
		}
		if next == "" {
			return out, nil
		}
		after = next
	}
}
