package edge

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/store"
)

// scoresMaxBytes caps each partition of the edge's models.ScoresStream:
// every result of every version is there, so it is bounded apart from the
// telemetry volume's retention.
const scoresMaxBytes = 256 << 20

// ensureScores creates the edge's models.ScoresStream if it is missing.
func ensureScores(ctx context.Context, st *store.Store) error {
	err := st.CreateStream(ctx, models.ScoresStream, store.StreamOptions{MaxBytes: scoresMaxBytes})
	if errors.Is(err, store.ErrExists) {
		return nil
	}
	return err
}

// minute is one version's results within one minute.
type minute struct {
	rec     models.SummaryRecord
	latency float64
}

// route runs the rendezvous on a batch the edge's filter scored: every
// running version of each reading's class scores it, and where the class's
// schedule picked a model's answer, that answer replaces the filter's
// (the canary's) — its detection goes up instead of the filter's, its
// score goes into the device's shadow. It returns the uplink records and
// scores to commit, and the records of models.ScoresStream.
func (m *Models) route(in []anomaly.Telemetry, up []anomaly.Record, scores []anomaly.Score) ([]anomaly.Record, []anomaly.Score, []store.Message) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.defaults()
	type at struct {
		device string
		at     time.Time
	}
	var recs []store.Message
	answered := map[at]bool{}
	latest := map[string]models.Result{}
	var detections []anomaly.Record
	for _, t := range in {
		vals := models.Values(t.Device, t.Topic, t.Payload)
		if len(vals) == 0 {
			continue
		}
		if t.Class != "" && m.Decoy.Sample(t.Class, t.At) {
			detections = append(detections, anomaly.Record{Kind: models.RecordInput, Device: t.Device, At: t.At,
				Value: models.InputRecord{Type: models.RecordInput, Device: t.Device, Class: t.Class, At: t.At, Values: vals}})
		}
		m.routedAny = true
		ans := m.runner.Observe(t.Device, t.Class, t.At, vals)
		for _, res := range ans.Results {
			used := ans.OK && res.Model == ans.Used.Model
			b, _ := json.Marshal(models.ScoreRecord{Type: models.RecordScore, Device: t.Device, Class: t.Class, Model: res.Model.Name,
				Version: res.Model.Version, Stage: res.Stage, Score: res.Score, Detected: res.Detected,
				Latency: float64(res.Latency.Nanoseconds()) / 1e3, Fault: res.Fault, Used: used, At: t.At})
			recs = append(recs, store.Message{Key: []byte(t.Device), Value: b, Timestamp: t.At,
				Headers: map[string]string{anomaly.RecordHeader: models.RecordScore}})
			detections = m.summarize(detections, t, res, used)
		}
		if !ans.OK {
			continue
		}
		answered[at{t.Device, t.At}] = true
		latest[t.Device] = ans.Used
		if ans.Used.Detected {
			detections = append(detections, anomaly.Record{Kind: anomaly.RecordAnomaly, Device: t.Device, At: t.At,
				Value: anomaly.Detection{Type: anomaly.RecordAnomaly, Device: t.Device, Class: t.Class,
					Detector: ans.Used.Model.String() + "/" + ans.Used.Detector, Score: ans.Used.Score, At: t.At}})
		}
	}
	if len(answered) == 0 && len(detections) == 0 {
		return up, scores, recs
	}
	out := up[:0:0]
	for _, r := range up {
		if r.Kind == anomaly.RecordAnomaly && answered[at{r.Device, r.At}] {
			continue // the canary's detection, not used
		}
		out = append(out, r)
	}
	out = append(out, detections...)
	for i, sc := range scores {
		if res, ok := latest[sc.Device]; ok {
			scores[i].Score = res.Score
			delete(latest, sc.Device)
		}
	}
	for dev, res := range latest {
		if res.Detected {
			scores = append(scores, anomaly.Score{Device: dev, Score: res.Score})
		}
	}
	return out, scores, recs
}

// summarize adds a result to its version's minute, appending the
// summaries of the minutes it closes to out.
func (m *Models) summarize(out []anomaly.Record, t anomaly.Telemetry, res models.Result, used bool) []anomaly.Record {
	from := t.At.Truncate(time.Minute)
	cur := m.minutes[res.Model]
	if cur != nil && !cur.rec.From.Equal(from) {
		out = append(out, cur.record())
		cur = nil
	}
	if cur == nil {
		cur = &minute{rec: models.SummaryRecord{Type: models.RecordSummary, Edge: m.Edge, Class: t.Class, Model: res.Model.Name,
			Version: res.Model.Version, Stage: res.Stage, From: from}}
		if m.minutes == nil {
			m.minutes = map[models.Ref]*minute{}
		}
		m.minutes[res.Model] = cur
	}
	r := &cur.rec
	if res.Fault != "" {
		r.Faults++
		return out
	}
	r.Scored++
	if used {
		r.Used++
	}
	if res.Detected {
		r.Detections++
	}
	r.MaxScore = max(r.MaxScore, res.Score)
	cur.latency += float64(res.Latency.Nanoseconds()) / 1e3
	return out
}

// record is the uplink record of a closed minute.
func (c *minute) record() anomaly.Record {
	r := c.rec
	if r.Scored > 0 {
		r.Latency = float64(int64(c.latency/float64(r.Scored)*1000)) / 1000
	}
	return anomaly.Record{Kind: models.RecordSummary, Device: r.Model, At: r.From.Add(time.Minute), Value: r}
}
