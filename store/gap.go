package store

import (
	"encoding/binary"
	"errors"
)

// replicaGap records at a replica the offsets gap.From to gap.To of a
// partition that its source quarantined, the way Stream.Quarantine
// records a gap at the source: a gap record read paths name, the
// partition's next offset moved to its end, the stream's count of
// quarantined offsets, an audit record. The caller has checked that the
// replica's next offset is gap.From.
func (w *wtx) replicaGap(path, topic string, part int, gap Gap, reason string) error {
	m, vol, name, err := w.object(path, KindStream)
	if err != nil {
		return err
	}
	h, err := w.head(path, vol, name, topic, part)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return err
	}
	id := partID(path, topic, part)
	if h == nil {
		delete(w.heads, id)
	} else {
		if !h.exists {
			// The gap is all the replica knows of the topic yet: list it.
			if err := w.set(vol, objKey(vol, kindTopic, name, topic), nil, 0); err != nil {
				return err
			}
			h.exists = true
		}
		h.next = max(h.next, gap.To)
	}
	// Messages staged before the gap in this commit are flushed as they
	// are; those after it start a batch of their own at gap.To.
	delete(w.pending, id)
	w.s.gapsMaybe.Store(true)
	if err := w.put(vol, binary.BigEndian.AppendUint64(gapPrefix(vol, name, topic, part), gap.From), binary.BigEndian.AppendUint64(nil, gap.To)); err != nil {
		return err
	}
	nm := *m
	nm.Quarantined += int64(gap.To - gap.From)
	if err := w.setMeta(&nm); err != nil {
		return err
	}
	w.writes++
	w.wake[id] = struct{}{}
	w.wake[path] = struct{}{}
	detail := map[string]any{"topic": topic, "partition": part, "from": gap.From, "to": gap.To, "source": "replica"}
	if reason != "" {
		detail["reason"] = reason
	}
	return w.audit("stream.gap", path, detail)
}
