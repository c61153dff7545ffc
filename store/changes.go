package store

// TopicPart names a partition of a topic.
type TopicPart struct {
	Topic     string
	Partition int
}

// PartEnd is a partition that a commit appended to and its next offset
// after that commit.
type PartEnd struct {
	TopicPart
	End uint64
}

// changeLogSize is how many appends a stream's change log remembers; a
// reader further behind looks at every topic instead.
const changeLogSize = 1 << 16

// changeLog is the topic partitions that the last commits appended to, for
// one stream that someone watches (Stream.Changes). entries[i] has cursor
// first+i.
type changeLog struct {
	first   uint64
	entries []PartEnd
}

func (l *changeLog) next() uint64 { return l.first + uint64(len(l.entries)) }

func (l *changeLog) add(tp PartEnd) {
	if len(l.entries) == changeLogSize {
		half := changeLogSize / 2
		n := copy(l.entries, l.entries[half:])
		clear(l.entries[n:])
		l.entries = l.entries[:n]
		l.first += uint64(half)
	}
	l.entries = append(l.entries, tp)
}

// Changes returns the topic partitions appended to since cursor, a value
// an earlier call returned, each once, and the cursor for the next call.
// complete is false when the store cannot tell (on the first call, with
// cursor 0, or after more appends since cursor than it remembers): the
// caller then looks at every topic. Only commits after the first call are
// recorded; take the cursor before looking at the stream.
func (st *Stream) Changes(cursor uint64) (parts []TopicPart, next uint64, complete bool) {
	ends, next, complete := st.ChangeEnds(cursor)
	for _, pe := range ends {
		parts = append(parts, pe.TopicPart)
	}
	return parts, next, complete
}

// ChangeEnds is Changes with each partition's next offset after the last
// of those commits that appended to it: a reader that only needs to know
// how far a partition reaches need not look it up. A partition's records
// may since have been trimmed or quarantined; reads say so.
func (st *Stream) ChangeEnds(cursor uint64) (parts []PartEnd, next uint64, complete bool) {
	s := st.v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.changes[st.path]
	if l == nil {
		l = &changeLog{first: 1}
		s.changes[st.path] = l
	}
	next = l.next()
	if cursor < l.first || cursor > next {
		return nil, next, false
	}
	at := make(map[TopicPart]int, next-cursor)
	for _, pe := range l.entries[cursor-l.first:] {
		if i, ok := at[pe.TopicPart]; ok {
			parts[i].End = max(parts[i].End, pe.End)
			continue
		}
		at[pe.TopicPart] = len(parts)
		parts = append(parts, pe)
	}
	return parts, next, true
}

// logChanges records the group's appends in the change logs of the
// streams watched. The caller holds s.mu.
func (s *Store) logChanges(order []*pendingPart) {
	if len(s.changes) == 0 {
		return
	}
	for _, p := range order {
		if l := s.changes["/"+p.vol+"/"+p.name]; l != nil {
			l.add(PartEnd{TopicPart{Topic: p.topic, Partition: p.part}, p.base + uint64(len(p.msgs))})
		}
	}
}
