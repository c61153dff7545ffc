package replicate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/wire"
)

// DefaultMirrorsDown returns the volumes a core lets its edges mirror.
func DefaultMirrorsDown() []string { return []string{"models", "firmware"} }

// defaultMirrorInterval is how often the receiving side of a mirror asks
// for news.
const defaultMirrorInterval = 5 * time.Second

// MirrorInterval is not read.
//
// Deprecated: set LinkConfig.MirrorInterval and ServerConfig.MirrorInterval.
// It is kept only until the tests that still assign it stop doing so.
var MirrorInterval = defaultMirrorInterval

// MirrorSpec is one volume mirror of an edge's link.
type MirrorSpec struct {
	Volume string
	Dir    wire.Dir
}

// ParseMirror reads a mirror as `weft mirror add` and --mirror give it:
// "core:/models" (down) or "/training" mirrored up ("up:/training").
func ParseMirror(s string) (MirrorSpec, error) {
	dir, vol := wire.Down, s
	switch {
	case strings.HasPrefix(s, "core:"):
		vol = strings.TrimPrefix(s, "core:")
	case strings.HasPrefix(s, "up:"):
		dir, vol = wire.Up, strings.TrimPrefix(s, "up:")
	}
	vol = strings.Trim(vol, "/")
	if vol == "" || strings.Contains(vol, "/") {
		return MirrorSpec{}, fmt.Errorf("replicate: mirror %q: want core:/<volume> or up:/<volume>", s)
	}
	return MirrorSpec{Volume: vol, Dir: dir}, nil
}

// mirror runs one volume mirror from the edge's side for as long as the
// link is up: a mirror that fails is logged and tried again after a pause,
// without taking the link's streams down with it.
func (l *Link) mirror(ctx context.Context, s *session, spec MirrorSpec) error {
	pause := max(l.cfg.MirrorInterval, time.Second)
	for {
		err := l.mirrorOnce(ctx, s, spec)
		if ctx.Err() != nil {
			return nil
		}
		l.log.Warn("mirror stopped; trying again", "volume", spec.Volume, "dir", spec.Dir, "in", pause, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Minute)
	}
}

func (l *Link) mirrorOnce(ctx context.Context, s *session, spec MirrorSpec) error {
	qs, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return wire.FromQUIC(err)
	}
	qs.SetPriority(8, false) // bulk: after control, updates, shadows and uplink
	defer qs.CancelRead(0)
	defer qs.CancelWrite(0)
	fc := wire.NewConn(qs, qs)
	if err := fc.Send(&wire.Mirror{Volume: spec.Volume, Dir: spec.Dir}); err != nil {
		return wire.FromQUIC(err)
	}
	if err := ensureVolume(ctx, l.cfg.Store, spec.Volume); err != nil {
		return err
	}
	if spec.Dir == wire.Down {
		err = mirror.ServeDest(ctx, fc, &mirror.Dest{Store: l.cfg.Store, Volume: spec.Volume}, l.cfg.MirrorInterval)
	} else {
		err = mirror.ServeSource(ctx, fc, &mirror.Source{Store: l.cfg.Store, Volume: spec.Volume})
	}
	return wire.FromQUIC(err)
}

// mirror serves a volume mirror an edge opened.
func (s *Server) mirror(ctx context.Context, sess *session, fc *wire.Conn, m *wire.Mirror) error {
	log := s.log.With("edge", sess.link.peer, "volume", m.Volume)
	refuse := func(err *wire.Error) error {
		log.Warn("mirror refused", "reason", err.Error())
		fc.Send(err)
		return nil // the stream ends, the link stays
	}
	var err error
	switch m.Dir {
	case wire.Down:
		if !slices.Contains(s.cfg.MirrorsDown, m.Volume) {
			return refuse(wire.Errorf(wire.CodeStream, "volume /%s is not mirrored to edges", m.Volume))
		}
		err = mirror.ServeSource(ctx, fc, &mirror.Source{Store: s.cfg.Store, Volume: m.Volume})
	case wire.Up:
		if !slices.Contains(s.cfg.MirrorsUp, m.Volume) {
			return refuse(wire.Errorf(wire.CodeStream, "volume /%s is not mirrored from edges", m.Volume))
		}
		vol := m.Volume + "." + sess.link.peer
		if err := ensureVolume(ctx, s.cfg.Store, vol); err != nil {
			return err
		}
		err = mirror.ServeDest(ctx, fc, &mirror.Dest{Store: s.cfg.Store, Volume: vol}, s.cfg.MirrorInterval)
	default:
		return refuse(wire.Errorf(wire.CodeProtocol, "mirror of /%s: bad direction %d", m.Volume, m.Dir))
	}
	if err != nil && ctx.Err() == nil {
		log.Warn("mirror stopped", "err", err) // the edge opens it again
	}
	return nil
}

func ensureVolume(ctx context.Context, st *store.Store, vol string) error {
	if err := st.CreateVolume(ctx, vol, store.VolumeOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("replicate: mirror volume /%s: %w", vol, err)
	}
	return nil
}
