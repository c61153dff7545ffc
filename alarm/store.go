package alarm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// Where alarms live, on every node.
const (
	// Volume holds the alarm objects.
	Volume = "alarms"
	// AlarmsTable holds every alarm by id (a Record).
	AlarmsTable = "/alarms/alarms"
	// ChangesStream is the change stream of AlarmsTable: webhooks are sent
	// from it.
	ChangesStream = "/alarms/changes"
	// SettingsTable holds the Settings under the key SettingsKey.
	SettingsTable = "/alarms/settings"
	SettingsKey   = "settings"
	// RecordAlarm is the value of the anomaly.RecordHeader header of an
	// alarm an edge sends up in /uplink/events (the value is a Record).
	RecordAlarm = "alarm"
)

// changesTTL is how long ChangesStream keeps its records.
const changesTTL = 7 * 24 * time.Hour

// ErrNotFound is the error of an alarm that does not exist.
var ErrNotFound = fmt.Errorf("%w: alarm", store.ErrNotFound)

// Ensure creates the alarm volume, tables and change stream that are
// missing.
func Ensure(ctx context.Context, st *store.Store) error {
	if err := st.CreateVolume(ctx, Volume, store.VolumeOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("alarm: %w", err)
	}
	if err := st.CreateStream(ctx, ChangesStream, store.StreamOptions{TTL: changesTTL}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("alarm: %w", err)
	}
	if err := st.CreateTable(ctx, AlarmsTable, store.TableOptions{ChangeStream: ChangesStream}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("alarm: %w", err)
	}
	if err := st.CreateTable(ctx, SettingsTable, store.TableOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("alarm: %w", err)
	}
	return nil
}

// Filter selects alarms; empty members select all.
type Filter struct {
	State, Type, Device, Edge string
}

// Match reports whether a passes the filter.
func (f *Filter) Match(a *Alarm) bool {
	return (f.State == "" || a.State == f.State) && (f.Type == "" || a.Type == f.Type) &&
		(f.Device == "" || a.Device == f.Device) && (f.Edge == "" || a.Edge == f.Edge)
}

// Records returns every alarm record of the node's table, in id order
// (none if the table does not exist yet).
func Records(ctx context.Context, st *store.Store) ([]Record, error) {
	var out []Record
	after := ""
	for {
		docs, next, err := st.Table(AlarmsTable).Scan(ctx, "", after, 1000)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("alarm: %w", err)
		}
		for _, d := range docs {
			var r Record
			if json.Unmarshal(d.Value, &r) == nil && r.ID != "" {
				out = append(out, r)
			}
		}
		if next == "" {
			return out, nil
		}
		after = next
	}
}

// List returns the alarms f selects, the newest raised first.
func List(ctx context.Context, st *store.Store, f Filter) ([]Alarm, error) {
	recs, err := Records(ctx, st)
	if err != nil {
		return nil, err
	}
	out := []Alarm{}
	for i := range recs {
		if f.Match(&recs[i].Alarm) {
			out = append(out, recs[i].Alarm)
		}
	}
	slices.SortStableFunc(out, func(a, b Alarm) int {
		if c := b.Raised.Compare(a.Raised); c != 0 {
			return c
		}
		return compare(a.ID, b.ID)
	})
	return out, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Get returns one alarm's record.
func Get(ctx context.Context, st *store.Store, id string) (Record, error) {
	d, err := st.Table(AlarmsTable).Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrBadPath) {
		return Record{}, fmt.Errorf("%w %s", ErrNotFound, id)
	}
	if err != nil {
		return Record{}, fmt.Errorf("alarm: %w", err)
	}
	var r Record
	if err := json.Unmarshal(d.Value, &r); err != nil {
		return Record{}, fmt.Errorf("alarm %s: %w", id, err)
	}
	return r, nil
}

// errUnchanged ends an update that would change nothing.
var errUnchanged = errors.New("alarm: unchanged")

// Ack acknowledges alarm id as subject at now and returns it. Acknowledging
// an alarm twice changes nothing.
func Ack(ctx context.Context, st *store.Store, id, subject string, now time.Time) (Alarm, bool, error) {
	var out Record
	changed := false
	_, err := st.Table(AlarmsTable).Update(ctx, id, func(old store.Doc, exists bool) (json.RawMessage, error) {
		if !exists {
			return nil, fmt.Errorf("%w %s", ErrNotFound, id)
		}
		var r Record
		if err := json.Unmarshal(old.Value, &r); err != nil {
			return nil, fmt.Errorf("alarm %s: %w", id, err)
		}
		out, changed = Acknowledge(r, subject, now)
		if !changed {
			return nil, errUnchanged
		}
		return json.Marshal(out)
	})
	if errors.Is(err, errUnchanged) {
		return out.Alarm, false, nil
	}
	if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrBadPath) {
		err = fmt.Errorf("%w %s", ErrNotFound, id)
	}
	if err != nil {
		return Alarm{}, false, err
	}
	return out.Alarm, changed, nil
}

// SettingsTopic is the topic of /updates/down on which the core sends its
// thresholds (not its webhooks) to its edges, as it sends desired state:
// written at the core only, by its engine, whenever its settings change.
const SettingsTopic = "alarm-settings"

// thresholds are the members of Settings a core sends its edges.
type thresholds struct {
	DeviceOfflineAfter Duration `json:"device_offline_after"`
	LinkDownAfter      Duration `json:"link_down_after"`
	DiskFreeBelow      float64  `json:"disk_free_below"`
	CertExpiryWithin   Duration `json:"cert_expiry_within"`
}

func thresholdsOf(s Settings) thresholds {
	return thresholds{s.DeviceOfflineAfter, s.LinkDownAfter, s.DiskFreeBelow, s.CertExpiryWithin}
}

// LoadSettings returns the settings the node applies: its own (stored in
// SettingsTable, with defaults for what they leave out, or the defaults),
// whose thresholds are replaced by those its core sent (SettingsTopic) when
// they are newer. The webhooks are always the node's own. version is that
// of the node's own document (0: none).
func LoadSettings(ctx context.Context, st *store.Store) (s Settings, version uint64, err error) {
	s = DefaultSettings()
	var updated time.Time
	d, err := st.Table(SettingsTable).Get(ctx, SettingsKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return Settings{}, 0, fmt.Errorf("alarm: settings: %w", err)
	default:
		var own Settings
		if err := json.Unmarshal(d.Value, &own); err != nil {
			return Settings{}, 0, fmt.Errorf("alarm: settings: %w", err)
		}
		s, _ = own.Check()
		version, updated = d.Version, d.Updated
	}
	th, at, ok, err := sentSettings(ctx, st)
	if err != nil {
		return Settings{}, 0, err
	}
	if ok && at.After(updated) {
		s.DeviceOfflineAfter, s.LinkDownAfter, s.DiskFreeBelow, s.CertExpiryWithin = th.DeviceOfflineAfter, th.LinkDownAfter, th.DiskFreeBelow, th.CertExpiryWithin
	}
	return s, version, nil
}

// sentSettings returns the latest thresholds of SettingsTopic, the raw
// message and when it was written; ok is false if there are none.
func sentSettings(ctx context.Context, st *store.Store) (th thresholds, at time.Time, ok bool, err error) {
	m, ok, err := lastSent(ctx, st)
	if err != nil || !ok {
		return th, at, false, err
	}
	var s Settings
	if json.Unmarshal(m.Value, &s) != nil {
		return th, at, false, nil
	}
	if s, err = s.Check(); err != nil {
		return th, at, false, nil
	}
	return thresholdsOf(s), m.Timestamp, true, nil
}

// lastSent is the latest message of SettingsTopic.
func lastSent(ctx context.Context, st *store.Store) (store.Message, bool, error) {
	s := st.Stream(store.UpdatesStream)
	low, next, err := s.Bounds(ctx, SettingsTopic, 0)
	if errors.Is(err, store.ErrNotFound) || (err == nil && next <= low) {
		return store.Message{}, false, nil
	}
	if err != nil {
		return store.Message{}, false, fmt.Errorf("alarm: settings sent: %w", err)
	}
	msgs, err := s.Read(ctx, SettingsTopic, 0, next-1, store.ReadOptions{Limit: 1})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Message{}, false, fmt.Errorf("alarm: settings sent: %w", err)
	}
	if len(msgs) == 0 {
		return store.Message{}, false, nil
	}
	return msgs[0], true, nil
}

// publish appends the core's thresholds to SettingsTopic when they differ
// from the latest sent. A core that was never given settings sends none.
func (e *Engine) publish(ctx context.Context, set Settings, version uint64) error {
	if version == 0 {
		return nil
	}
	b, err := json.Marshal(thresholdsOf(set))
	if err != nil {
		return err
	}
	if bytes.Equal(b, e.published) {
		return nil
	}
	if m, ok, err := lastSent(ctx, e.st); err != nil {
		return err
	} else if ok && bytes.Equal(m.Value, b) {
		e.published = b
		return nil
	}
	if _, err := shadow.DownOf(e.st).Write(ctx, shadow.Write{Records: []store.AppendRequest{{Path: store.UpdatesStream, Topic: SettingsTopic, Partition: 0,
		Messages: []store.Message{{Value: b}}}}}); err != nil {
		return fmt.Errorf("alarm: send settings to the edges: %w", err)
	}
	e.published = b
	return nil
}

// SaveSettings checks s (a secret given as SecretMask keeps the one
// stored for its URL) and stores it. It returns the settings stored.
func SaveSettings(ctx context.Context, st *store.Store, s Settings) (Settings, error) {
	if err := Ensure(ctx, st); err != nil {
		return Settings{}, err
	}
	old, _, err := LoadSettings(ctx, st)
	if err != nil {
		return Settings{}, err
	}
	s, err = s.Unmask(old).Check()
	if err != nil {
		return Settings{}, err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return Settings{}, err
	}
	if _, err := st.Table(SettingsTable).Put(ctx, SettingsKey, b); err != nil {
		return Settings{}, fmt.Errorf("alarm: settings: %w", err)
	}
	return s, nil
}
