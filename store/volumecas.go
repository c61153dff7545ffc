package store

import (
	"context"
	"fmt"
	"time"
)

// VolumeChange is a change to some of a volume's policies; nil fields keep
// their values.
type VolumeChange struct {
	TTL        *time.Duration
	Quota      *int64
	DropOldest *bool
}

// ChangeVolume changes the policies that change sets and keeps the others,
// reading and writing the volume's record in one transaction of the
// writer: two changes of different policies, made at once, both stay.
// It returns the volume's record as changed.
func (s *Store) ChangeVolume(ctx context.Context, name string, change VolumeChange) (VolumeInfo, error) {
	if (change.TTL != nil && *change.TTL < 0) || (change.Quota != nil && *change.Quota < 0) {
		return VolumeInfo{}, fmt.Errorf("%w: negative ttl or quota", ErrInvalid)
	}
	var out VolumeInfo
	err := s.do(ctx, 256, false, func(w *wtx) error {
		old, err := w.volume(name)
		if err != nil {
			return err
		}
		vi := *old
		if change.TTL != nil {
			vi.TTL = *change.TTL
		}
		if change.Quota != nil {
			vi.Quota = *change.Quota
		}
		if change.DropOldest != nil {
			vi.DropOldest = *change.DropOldest
		}
		if err := w.writeVolume(&vi); err != nil {
			return err
		}
		out = vi
		return w.audit("volume.policy", "/"+name, VolumeOptions{TTL: vi.TTL, Quota: vi.Quota, DropOldest: vi.DropOldest})
	})
	if err != nil {
		return VolumeInfo{}, err
	}
	return out, nil
}
