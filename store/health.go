package store

import "fmt"

// Writable reports why a write would be refused now, or nil if it would
// be taken: the store is closed, its writes stopped after Badger could
// not create a file, or the file system holding it is read-only or short
// of the space or inodes Config.MinFreeBytes and MinFreeInodes keep. It
// writes nothing: readiness checks (GET /readyz) call it.
func (s *Store) Writable() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.broken.Load(); err != nil {
		return *err
	}
	sp, err := s.cfg.Statfs(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("store: statfs: %w", err)
	}
	if sp.ReadOnly {
		return fmt.Errorf("%w: %s is read-only", ErrDiskFull, s.cfg.Dir)
	}
	if s.cfg.MinFreeBytes <= 0 {
		return nil
	}
	return s.checkSpace(sp, false)
}
