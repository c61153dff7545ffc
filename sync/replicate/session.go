package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// DefaultUp returns the streams an edge sends to its core.
func DefaultUp() []string {
	return []string{store.UplinkStream, store.ShadowChanges, store.AuditStream}
}

// DefaultDown returns the streams a core sends to its edges.
func DefaultDown() []string { return []string{store.UpdatesStream} }

// Session is what the replicated streams of one connection share, on
// either side of it. Store and Link are required; the zero value of every
// other field works.
type Session struct {
	// Store holds the streams sent and the replicas received.
	Store *store.Store
	// Link receives the streams' figures.
	Link *LinkStats
	// Limit is the bandwidth budget the senders share; nil: no cap. With a
	// cap, batches are cut to a twentieth of a second's worth.
	Limit *LinkLimiter
	// Window bounds the bytes sent and not yet acknowledged per stream.
	// Default 32 MiB.
	Window int
	// Compress turns zstd on.
	Compress bool
	// Linger is how long a sender lets news wait before it reads them, so
	// that the records that follow go in the same batches (fewer frames,
	// packets and acknowledgements, and batches big enough to compress:
	// Kafka's linger.ms). Default: DefaultLinger when the link has a
	// bandwidth cap (Limit), UncappedLinger otherwise; negative: none.
	// Updates and shadow changes never wait.
	Linger time.Duration
	// Recheck is how long a topic a sender's filter withheld waits before
	// the filter is asked again. Default 30 s.
	Recheck time.Duration
	// Features are the optional frames both ends speak, from the
	// handshake (wire.Welcome.Features): with wire.FeatureGap a sender
	// sends a quarantined range as a Gap frame instead of waiting at it.
	Features []string
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the streams' logs. Nil discards them.
	Logger *slog.Logger
}

// Run replicates the stream at path over the frame connection fc, until
// ctx ends or the stream fails: this node sends it when send is set,
// receives it otherwise. parts is the stream's partition count here.
// allow, if set, decides the topics: a receiver refuses the others, a
// sender withholds them. An error of code wire.CodeStream concerns this
// stream only; the caller decides what it means for the connection.
func (s *Session) Run(ctx context.Context, fc *wire.Conn, path string, send bool, parts int, allow func(topic string) error) error {
	now, logger := s.Now, s.Logger
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("stream", path)
	dir := DirReceive
	if send {
		dir = DirSend
	}
	stats := s.Link.Stream(dir, path)
	stats.SetErr(nil)
	var err error
	if send {
		log.Debug("sending")
		window := s.Window
		if window <= 0 {
			window = defaultWindow
		}
		sd := &sender{log: s.Store.Stream(path), path: path, parts: parts, conn: fc, stats: stats,
			limit: s.Limit, window: window, maxBytes: s.batchBytes(), compress: s.Compress, now: now, logger: log,
			allow: allow, recheck: s.Recheck, linger: s.linger(path), gaps: slices.Contains(s.Features, wire.FeatureGap)}
		err = sd.run(ctx)
	} else {
		log.Debug("receiving")
		rc := &receiver{replica: s.Store, log: s.Store.Stream(path), path: path, allow: allow, conn: fc, stats: stats, now: now, logger: log}
		err = rc.run(ctx)
	}
	if err != nil && ctx.Err() == nil && wire.CodeOf(err) != wire.CodeStream {
		return fmt.Errorf("%s: %w", path, err)
	}
	return err
}

// DefaultLinger is the linger of the bulk streams of a link with a
// bandwidth cap.
const DefaultLinger = 200 * time.Millisecond

// UncappedLinger is the linger of the bulk streams of a link without a
// cap: long enough that a stream of many device topics, each with a
// record now and then, is read and sent a few records a topic at a time
// instead of one (about a third less CPU per record for the edge under
// load, see docs/benchmarks.md), short against the time anyone looks.
const UncappedLinger = 50 * time.Millisecond

// linger is how long the sender of path lets news wait.
func (s *Session) linger(path string) time.Duration {
	switch {
	case Urgency(path) <= Urgency(store.ShadowChanges) || s.Linger < 0:
		return 0
	case s.Linger > 0:
		return s.Linger
	case s.Limit.Rate() > 0:
		return DefaultLinger
	}
	return UncappedLinger
}

// batchBytes bounds the bytes read into one batch: with a cap, a
// twentieth of a second's worth (at least 16 KiB), so that no batch holds
// the others long.
func (s *Session) batchBytes() int {
	if r := s.Limit.Rate(); r > 0 {
		return int(min(readMaxBytes, max(16<<10, r/20)))
	}
	return readMaxBytes
}

// SourcePolicy returns the retention and limits of the stream at path in
// st and of its volume, for a receiver that creates the replica (nil when
// the stream cannot be read).
func SourcePolicy(ctx context.Context, st *store.Store, path string) *wire.Policy {
	info, err := st.Stat(ctx, path)
	if err != nil || info.Kind != store.KindStream {
		return nil
	}
	p := &wire.Policy{TTL: int64(info.TTL), MaxBytes: info.MaxBytes, Priority: info.Priority}
	if vol, _, err := store.SplitPath(path); err == nil {
		if vi, err := st.Volume(vol); err == nil {
			p.VolumeTTL, p.Quota, p.DropOldest = int64(vi.TTL), vi.Quota, vi.DropOldest
		}
	}
	return p
}

// EnsureReplica makes sure the replica of path exists in st with parts
// partitions (any count when parts is 0), creating it if needed, and its
// volume too, and returns the partition count. What it creates gets the
// source's policy pol (retention, quota, drop-oldest, the stream's own
// TTL, size cap and priority); nil, from a peer of before policies, makes
// them with none. A replica or volume that exists keeps its own policy. A
// stream that cannot be held here is an error of code wire.CodeStream
// that says why.
func EnsureReplica(ctx context.Context, st *store.Store, path string, parts int, pol *wire.Policy) (int, error) {
	if pol == nil {
		pol = &wire.Policy{}
	}
	sopts := store.StreamOptions{Partitions: parts, TTL: time.Duration(pol.TTL), MaxBytes: pol.MaxBytes, Priority: pol.Priority}
	info, err := st.Stat(ctx, path)
	if errors.Is(err, store.ErrNotFound) && parts > 0 {
		err = st.CreateStream(ctx, path, sopts)
		if vol, _, perr := store.SplitPath(path); errors.Is(err, store.ErrNotFound) && perr == nil {
			if _, verr := st.Volume(vol); errors.Is(verr, store.ErrNotFound) {
				// The volume is missing here: make it, then the stream.
				vopts := store.VolumeOptions{TTL: time.Duration(pol.VolumeTTL), Quota: pol.Quota, DropOldest: pol.DropOldest}
				if verr := st.CreateVolume(ctx, vol, vopts); verr != nil && !errors.Is(verr, store.ErrExists) {
					return 0, wire.Errorf(wire.CodeStream, "%s: volume %s does not exist here and cannot be created: %v", path, vol, verr)
				}
				err = st.CreateStream(ctx, path, sopts)
			}
		}
		if errors.Is(err, store.ErrExists) {
			err = nil
		}
		if err != nil {
			return 0, wire.Errorf(wire.CodeStream, "%s: cannot create the replica: %v", path, err)
		}
		info, err = st.Stat(ctx, path)
	}
	if err != nil {
		return 0, wire.Errorf(wire.CodeStream, "%s: %v", path, err)
	}
	if info.Kind != store.KindStream {
		return 0, wire.Errorf(wire.CodeStream, "%s is a %s, not a stream", path, info.Kind)
	}
	if parts > 0 && info.Partitions != parts {
		return 0, wire.Errorf(wire.CodeStream, "%s has %d partitions here and %d at the source", path, info.Partitions, parts)
	}
	return info.Partitions, nil
}
