package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Config configures a Store. The zero value of every field but Dir works.
type Config struct {
	// Dir is the data directory. Required.
	Dir string
	// Name is the node's name, used as the topic of the records this store
	// writes itself (audit records, table change records). The store keeps
	// the last name it was opened with: opened without one (by a store
	// command on a node's data directory), it goes on writing under the
	// node's name, so a replica takes those records as the node's own.
	// Default that stored name, or "local" for a store no node opened.
	Name string
	// MinFreeBytes is the free space the file system must keep; below it
	// writes are refused with ErrDiskFull. Badger writes its memtables and
	// tables through mmap, where a full disk is a fatal SIGBUS rather than
	// an error, so the reserve must hold what flushes and compactions
	// write before they free anything: by default six memtables plus
	// 20 MiB (404 MiB with the default memtable). Negative disables the
	// check.
	MinFreeBytes int64
	// MinFreeInodes is the number of free inodes the file system must
	// keep; below it writes are refused with ErrDiskFull as for space
	// (Badger creates a file for every memtable and table, and a memtable
	// it cannot create leaves it unable to read or write). Default 1024;
	// negative disables the check. Both checks are off when MinFreeBytes
	// is negative.
	MinFreeInodes int64
	// Statfs reports the free space and inodes of the file system holding
	// Dir and whether Dir can be written to, checked before every commit.
	// Default statfs(2) and access(2); tests put figures of their own
	// here.
	Statfs func(dir string) (Space, error)
	// MemTableSize is Badger's memtable size. Default 64 MiB.
	MemTableSize int64
	// BlockCacheSize and IndexCacheSize bound Badger's caches of data
	// blocks and of table indexes and bloom filters. Default 64 MiB and
	// 32 MiB.
	BlockCacheSize, IndexCacheSize int64
	// NumMemtables is how many memtables Badger keeps (the one written
	// and those waiting to be flushed) before writes stall. Default 5.
	NumMemtables int
	// NumCompactors is how many compactions Badger runs at once, each
	// building its tables in memory. Default 4; at least 2.
	NumCompactors int
	// NumLevelZeroTables is how many memtable-sized tables level 0 holds
	// before compaction starts, and NumLevelZeroTablesStall how many
	// before writes stall. Default 5 and 15.
	NumLevelZeroTables, NumLevelZeroTablesStall int
	// BaseTableSize is the size of a table below level 0 (each level
	// deeper twice that). Default 2 MiB.
	BaseTableSize int64
	// RetentionInterval is how often retention runs. Default 1 minute;
	// negative disables the background loop (EnforceRetention still works).
	RetentionInterval time.Duration
	// Partitions sets how many partitions a well-known stream (EventsStream,
	// ShadowChanges, ...) gets when the store creates it, by path; 1 for a
	// stream it does not name. It has no effect on a stream that exists.
	Partitions map[string]int
	// Now is the system clock. Default time.Now. The store never stamps
	// by it directly: it keeps a time floor (Store.Now, docs/store.md#time).
	Now func() time.Time
	// Monotonic is a clock no wall-clock step moves: the time elapsed
	// since some fixed moment. Default the process's monotonic clock
	// when Now is time.Now; with Now set and Monotonic not, how far Now
	// has moved forward (a step back is still seen, a jump forward not).
	Monotonic func() time.Duration
	// ClockJump is the forward step of the system clock past which
	// retention discounts the step until ConfirmTime. Default
	// DefaultClockJump (5 minutes).
	ClockJump time.Duration
	// Logger receives the store's logs. Nil discards them.
	Logger *slog.Logger

	tune  func(*badger.Options) // tests adjust Badger here
	noWAL bool                  // tests: Badger syncs each commit itself, as before the log
}

// Space is what the file system holding the data directory has left.
type Space struct {
	FreeBytes  int64
	FreeInodes int64 // negative: the file system does not count inodes
	// ReadOnly reports that the directory cannot be written to: a
	// read-only mount (a file system remounted read-only after errors)
	// or permissions.
	ReadOnly bool
}

// statfs is the default Config.Statfs.
func statfs(dir string) (Space, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return Space{}, err
	}
	sp := Space{FreeBytes: int64(st.Bavail) * int64(st.Bsize), FreeInodes: int64(st.Ffree)}
	if st.Files == 0 {
		sp.FreeInodes = -1 // no inode count (btrfs and the like)
	}
	const stRdonly = 1 // ST_RDONLY
	sp.ReadOnly = st.Flags&stRdonly != 0 || syscall.Access(dir, 2 /* W_OK */) != nil
	return sp, nil
}

// closeTimeout bounds Close: Badger retries a failed memtable flush
// forever, and a close that waits for it never ends.
const closeTimeout = 10 * time.Second

// Well-known objects that exist on every store.
const (
	EventsStream   = "/telemetry/events"
	ByDeviceStream = "/telemetry/by_device"
	UplinkStream   = "/uplink/events"
	UpdatesStream  = "/updates/down"
	AuditStream    = "/audit/events"
	ShadowsTable   = "/shadows/devices"
	ShadowChanges  = "/shadows/changes"
)

// WellKnownVolumes exist on every store.
var WellKnownVolumes = []string{"telemetry", "shadows", "uplink", "updates", "models", "firmware", "audit", "metrics"}

const (
	maxGroupOps   = 4096
	maxGroupBytes = 8 << 20
	maxBatchBytes = 512 << 10
	// valueThreshold: values this large (big batches, file chunks) go to
	// Badger's value log instead of its LSM tree, so they are written once
	// rather than flushed and compacted level by level.
	valueThreshold = 64 << 10
	maxHeadCache   = 1 << 16
)

// Store is one node's store. It is safe for concurrent use.
type Store struct {
	cfg Config
	db  *badger.DB
	log *slog.Logger

	metrics atomic.Pointer[Metrics] // set by NewMetrics

	ts      atomic.Uint64 // last committed timestamp
	ops     chan *wop
	closing chan struct{}
	wg      sync.WaitGroup
	closed  atomic.Bool
	broken  atomic.Pointer[error] // set when Badger can no longer write

	unfinished []Unfinished // file writes removed at open

	clock  *floorClock      // the time floor (clock.go)
	sysNow func() time.Time // the system clock; cfg.Now reads it through the floor
	saved  atomic.Int64     // floor last persisted, Unix nanoseconds

	// gapsMaybe is set once some partition may hold a quarantined range
	// (at open, or when one is recorded): until then no read looks for
	// one.
	gapsMaybe atomic.Bool
	// heads caches partition state; only the writer goroutine touches it.
	latest     *View
	heads      map[string]*partState
	wal        *wal // writer only after Open
	mirrors    int  // mirror updates pending, writer only after Open
	groupBytes int
	rr         uint64 // round-robin counter for keyless appends, writer only

	mu       sync.RWMutex
	metas    map[string]*Info // path -> object info, a cache of committed metadata
	metaGen  uint64           // bumped whenever metas changes by a commit
	usage    map[string]int64 // volume -> bytes used
	waiters  map[string]chan struct{}
	changes  map[string]*changeLog // stream path -> what it was appended to
	snapTS   map[string]uint64     // "vol\x00name" -> ts, kept from GC
	volumes  map[string]*VolumeInfo
	discards []discardMark
}

type discardMark struct {
	at time.Time
	ts uint64
}

// Open opens or creates the store in cfg.Dir and makes sure the well-known
// volumes and objects exist.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: no data directory", ErrInvalid)
	}
	named := cfg.Name != ""
	if cfg.MemTableSize == 0 {
		cfg.MemTableSize = 64 << 20
	}
	if cfg.MinFreeBytes == 0 {
		cfg.MinFreeBytes = 6*cfg.MemTableSize + 20<<20
	}
	if cfg.MinFreeInodes == 0 {
		cfg.MinFreeInodes = 1024
	}
	if cfg.Statfs == nil {
		cfg.Statfs = statfs
	}
	if cfg.BlockCacheSize == 0 {
		cfg.BlockCacheSize = 64 << 20
	}
	if cfg.IndexCacheSize == 0 {
		cfg.IndexCacheSize = 32 << 20
	}
	if cfg.RetentionInterval == 0 {
		cfg.RetentionInterval = time.Minute
	}
	sysClock := cfg.Now == nil
	if sysClock {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := probeWrite(cfg.Dir); err != nil {
		return nil, fmt.Errorf("%w: open %s: the directory is not writable: %v", ErrDiskFull, cfg.Dir, err)
	}
	// Durability is the write-ahead log's (wal.go): Badger does not sync
	// on its own.
	opts := badger.DefaultOptions(cfg.Dir).
		WithSyncWrites(cfg.noWAL).
		WithDetectConflicts(false).
		WithMemTableSize(cfg.MemTableSize).
		WithBlockCacheSize(cfg.BlockCacheSize).
		WithIndexCacheSize(cfg.IndexCacheSize).
		WithValueLogFileSize(256 << 20).
		WithValueThreshold(valueThreshold).
		WithNumVersionsToKeep(1).
		WithLogger(badgerLogger{cfg.Logger}).
		WithMetricsEnabled(false).
		// Every table block and value log entry read is checked: a
		// damaged one is an error, not garbage. (An iterator meeting a
		// damaged block ends that table silently; reads find the offsets
		// missing and say so.)
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true)
	if cfg.NumMemtables > 0 {
		opts = opts.WithNumMemtables(cfg.NumMemtables)
	}
	if cfg.NumCompactors > 0 {
		opts = opts.WithNumCompactors(max(2, cfg.NumCompactors))
	}
	if cfg.NumLevelZeroTables > 0 {
		opts = opts.WithNumLevelZeroTables(cfg.NumLevelZeroTables)
	}
	if cfg.NumLevelZeroTablesStall > 0 {
		opts = opts.WithNumLevelZeroTablesStall(max(cfg.NumLevelZeroTablesStall, opts.NumLevelZeroTables+1))
	}
	if cfg.BaseTableSize > 0 {
		opts = opts.WithBaseTableSize(cfg.BaseTableSize)
	}
	if cfg.tune != nil {
		cfg.tune(&opts)
	}
	db, err := badger.OpenManaged(opts)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg:     cfg,
		db:      db,
		log:     cfg.Logger,
		ops:     make(chan *wop, 1024),
		closing: make(chan struct{}),
		heads:   make(map[string]*partState),
		metas:   make(map[string]*Info),
		usage:   make(map[string]int64),
		waiters: make(map[string]chan struct{}),
		changes: make(map[string]*changeLog),
		snapTS:  make(map[string]uint64),
		volumes: make(map[string]*VolumeInfo),
	}
	if !cfg.noWAL {
		if s.wal, err = openWAL(cfg.Dir, db, cfg.Logger); err != nil {
			db.Close()
			return nil, err
		}
	}
	s.latest = &View{s: s}
	s.groupBytes = min(maxGroupBytes, int(cfg.MemTableSize/10))
	s.ts.Store(db.MaxVersion())
	if s.mirrors, err = s.clockAfterMirrors(); err != nil {
		s.wal.close()
		db.Close()
		return nil, err
	}
	if err := s.load(); err != nil {
		s.wal.close()
		db.Close()
		return nil, err
	}
	if err := s.openClock(sysClock); err != nil {
		s.wal.close()
		db.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.writer()
	if err := s.settleName(named); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.bootstrap(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.sweepTombs(context.Background()); err != nil {
		s.Close()
		return nil, err
	}
	if s.unfinished, err = s.reclaimWrites(context.Background()); err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.background()
	return s, nil
}

// load reads volumes, usage and snapshots into memory.
func (s *Store) load() error {
	txn := s.db.NewTransactionAt(s.ts.Load(), false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
	defer it.Close()
	for _, p := range []byte{'V', 'U', 'S'} {
		for it.Seek([]byte{p}); it.ValidForPrefix([]byte{p}); it.Next() {
			item := it.Item()
			k := string(item.Key()[1:])
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("store: load: %w", err)
			}
			switch p {
			case 'V':
				vi, err := decodeVolume(k, v)
				if err != nil {
					return err
				}
				s.volumes[k] = vi
			case 'U':
				if len(v) == 8 {
					s.usage[k] = int64(binary.BigEndian.Uint64(v))
				}
			case 'S':
				sn, err := decodeSnapshot(v)
				if err != nil {
					return err
				}
				s.snapTS[k] = sn.TS
			}
		}
	}
	// Whether any partition holds a quarantined range: reads that find
	// nothing look for one only then.
	for vol := range s.volumes {
		pfx := append([]byte{'v'}, vol...)
		pfx = append(pfx, 0, kindGap)
		if it.Seek(pfx); it.ValidForPrefix(pfx) {
			s.gapsMaybe.Store(true)
			break
		}
	}
	s.updateDiscard(time.Now())
	return nil
}

// Close stops the writer and closes the database. Calls in flight return
// ErrClosed or complete. It returns within about ten seconds whatever the
// disk does: when Badger cannot finish (it retries a flush that fails on
// a full or read-only disk forever), Close gives up and says so; every
// acknowledged write is in Badger's write-ahead log already.
func (s *Store) Close() error {
	if s.closed.Load() {
		return nil
	}
	if s.broken.Load() == nil {
		// Best effort, a second at most: the next open reads the floor.
		saved := make(chan struct{})
		go func() { s.saveFloor(context.Background()); close(saved) }()
		select {
		case <-saved:
		case <-time.After(time.Second):
		}
	}
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.closing)
	deadline := time.NewTimer(closeTimeout)
	defer deadline.Stop()
	stopped := make(chan struct{})
	go func() { s.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(closeTimeout / 2):
		// The writer is stuck in a commit Badger cannot finish; closing
		// the database releases it.
	}
	done := make(chan error, 1)
	go func() { done <- s.db.Close() }()
	select {
	case err := <-done:
		s.wal.close()
		if err != nil {
			return fmt.Errorf("store: close: %w", err)
		}
		return nil
	case <-deadline.C:
		return fmt.Errorf("store: close: the database did not close within %v (is the disk full or read-only?); acknowledged writes are in its write-ahead log", closeTimeout)
	}
}

// probeWrite checks that a file can be created in dir.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return err
	}
	name := f.Name()
	_, err = f.Write([]byte{0})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	return err
}

// Name is the node name the store writes its own records under.
func (s *Store) Name() string { return s.cfg.Name }

// nameKey holds the name of the node that last opened the store.
var nameKey = []byte("I")

// settleName takes the stored node name when the store was opened without
// one, and records a name it was given that differs from the stored one.
func (s *Store) settleName(named bool) error {
	txn := s.db.NewTransactionAt(s.ts.Load(), false)
	defer txn.Discard()
	stored := ""
	item, err := txn.Get(nameKey)
	switch {
	case err == nil:
		b, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("store: node name: %w", err)
		}
		stored = string(b)
	case !errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("store: node name: %w", err)
	}
	if !named {
		s.cfg.Name = cmp.Or(stored, "local")
		return nil
	}
	if stored == s.cfg.Name {
		return nil
	}
	return s.do(context.Background(), 64, false, func(w *wtx) error { return w.set("", nameKey, []byte(s.cfg.Name), 0) })
}

// Unfinished lists the file writes a crash interrupted whose chunks the
// store removed when it opened.
func (s *Store) Unfinished() []Unfinished { return s.unfinished }

// Dir is the data directory.
func (s *Store) Dir() string { return s.cfg.Dir }

func (s *Store) background() {
	defer s.wg.Done()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	var ret <-chan time.Time
	if s.cfg.RetentionInterval > 0 {
		rt := time.NewTicker(s.cfg.RetentionInterval)
		defer rt.Stop()
		ret = rt.C
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.closing; cancel() }()
	for {
		select {
		case <-s.closing:
			return
		case now := <-tick.C:
			s.tickClock(ctx)
			s.updateDiscard(now)
			s.collectValueLog()
		case <-ret:
			if err := s.EnforceRetention(ctx); err != nil && !errors.Is(err, ErrClosed) && ctx.Err() == nil {
				s.log.Warn("retention failed", "err", err)
			}
		}
	}
}

// updateDiscard lets Badger drop versions older than both the oldest
// snapshot and the timestamps of the last 30 seconds (so that long reads in
// flight keep their versions).
func (s *Store) updateDiscard(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discards = append(s.discards, discardMark{now, s.ts.Load()})
	var ts uint64
	for len(s.discards) > 0 && now.Sub(s.discards[0].at) >= 30*time.Second {
		ts = s.discards[0].ts
		s.discards = s.discards[1:]
	}
	if ts == 0 {
		return
	}
	for _, st := range s.snapTS {
		if st < ts {
			ts = st
		}
	}
	s.db.SetDiscardTs(ts)
}

// collectValueLog rewrites value log files that are mostly garbage
// (trimmed batches, deleted rows and file chunks) so that their space goes
// back to the file system. A rewrite copies up to half a file, so it waits
// while free space is below the reserve plus that much.
func (s *Store) collectValueLog() int {
	if s.cfg.MinFreeBytes > 0 {
		if free, err := s.freeBytes(); err != nil || free < s.cfg.MinFreeBytes+s.db.Opts().ValueLogFileSize/2 {
			return 0
		}
	}
	n := 0
	for ; n < 16; n++ {
		if err := s.db.RunValueLogGC(0.5); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("value log collection failed", "err", err)
			}
			break
		}
	}
	return n
}

// readTxn opens a read transaction at ts, or at the latest commit when ts is 0.
func (s *Store) readTxn(ts uint64) *badger.Txn {
	if ts == 0 {
		ts = s.ts.Load()
	}
	return s.db.NewTransactionAt(ts, false)
}

// notifyChan returns a channel closed at the next commit that touches key.
func (s *Store) notifyChan(key string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.waiters[key]
	if !ok {
		ch = make(chan struct{})
		s.waiters[key] = ch
	}
	return ch
}

func (s *Store) wake(keys map[string]struct{}) {
	if len(keys) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range keys {
		if ch, ok := s.waiters[k]; ok {
			close(ch)
			delete(s.waiters, k)
		}
	}
}

// freeBytes reports the free space of the data directory's file system.
func (s *Store) freeBytes() (int64, error) {
	sp, err := s.cfg.Statfs(s.cfg.Dir)
	return sp.FreeBytes, err
}

// checkSpace says why a write must be refused now, if it must: the file
// system is read-only or short of space or inodes. A write that frees
// space needs half the reserve.
func (s *Store) checkSpace(sp Space, freesSpace bool) error {
	if sp.ReadOnly {
		return fmt.Errorf("%w: %s is read-only", ErrDiskFull, s.cfg.Dir)
	}
	bytes, inodes := s.cfg.MinFreeBytes, s.cfg.MinFreeInodes
	if freesSpace {
		bytes, inodes = bytes/2, inodes/2
	}
	if sp.FreeBytes < bytes {
		return fmt.Errorf("%w: %d bytes free, %d required", ErrDiskFull, sp.FreeBytes, bytes)
	}
	if inodes > 0 && sp.FreeInodes >= 0 && sp.FreeInodes < inodes {
		return fmt.Errorf("%w: %d inodes free, %d required", ErrDiskFull, sp.FreeInodes, inodes)
	}
	return nil
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {}
