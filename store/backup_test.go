package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBackupRestore: a full backup and an incremental one restored into an
// empty directory give a store with every stream message (same offsets),
// table document, file and volume policy the source had at the second
// backup, and that store takes writes at the next offsets. Restoring into
// a directory in use is refused.
func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	src := openTest(t)
	if err := src.CreateVolume(ctx, "backlog", VolumeOptions{Quota: 1 << 20, DropOldest: true}); err != nil {
		t.Fatal(err)
	}
	appendSeq(t, src, EventsStream, "edge1", 0, 50, 100, time.Now())
	if _, err := src.Table(ShadowsTable).Put(ctx, "pump-1", []byte(`{"reported":{"temp":21}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := src.File("/models/m1").Write(ctx, strings.NewReader(strings.Repeat("model ", 100000))); err != nil {
		t.Fatal(err)
	}
	var full, incr bytes.Buffer
	last, err := src.Backup(&full, 0)
	if err != nil || last == 0 {
		t.Fatalf("full backup: %d %v", last, err)
	}

	appendSeq(t, src, EventsStream, "edge1", 50, 20, 100, time.Now())
	if _, err := src.Table(ShadowsTable).Put(ctx, "pump-2", []byte(`{"reported":{"temp":7}}`)); err != nil {
		t.Fatal(err)
	}
	if err := src.Table(ShadowsTable).Delete(ctx, "pump-1"); err != nil {
		t.Fatal(err)
	}
	last2, err := src.Backup(&incr, last)
	if err != nil || last2 <= last {
		t.Fatalf("incremental backup: %d after %d, %v", last2, last, err)
	}
	var none bytes.Buffer
	if v, err := src.Backup(&none, last2); err != nil || v != last2 {
		t.Fatalf("a backup with nothing new returned %d, %v; want %d", v, err, last2)
	}
	if incr.Len() >= full.Len() {
		t.Errorf("incremental backup %d bytes, full %d: want it smaller", incr.Len(), full.Len())
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(dir, &full, &incr); err != nil {
		t.Fatal(err)
	}
	if err := Restore(dir, bytes.NewReader(nil)); !errors.Is(err, ErrNotEmptyDir) {
		t.Fatalf("restore into a used directory: %v", err)
	}
	dst := openTest(t, func(c *Config) { c.Dir = dir })
	for _, p := range []string{EventsStream, ShadowsTable, "/models/m1"} {
		if err := equalObject(ctx, src, dst, p); err != nil {
			t.Error(err)
		}
	}
	if _, err := dst.Table(ShadowsTable).Get(ctx, "pump-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("pump-1, deleted before the incremental backup: %v", err)
	}
	vi, err := dst.Volume("backlog")
	if err != nil || vi.Quota != 1<<20 || !vi.DropOldest {
		t.Errorf("volume policy: %+v %v", vi, err)
	}
	if sv, _ := src.Volume("telemetry"); sv.Used != func() int64 { v, _ := dst.Volume("telemetry"); return v.Used }() {
		t.Errorf("telemetry usage differs after restore")
	}
	pos, err := dst.Stream(EventsStream).Append(ctx, "edge1", Message{Value: []byte("next")})
	if err != nil || pos[0].Offset != 70 {
		t.Fatalf("append after restore: %v %v, want offset 70", pos, err)
	}
}

// equalObject compares a stream (every topic and partition), a table or
// a file between two stores.
func equalObject(ctx context.Context, a, b *Store, path string) error {
	ia, err := a.Stat(ctx, path)
	if err != nil {
		return err
	}
	ib, err := b.Stat(ctx, path)
	if err != nil {
		return fmt.Errorf("%s after restore: %w", path, err)
	}
	switch ia.Kind {
	case KindStream:
		ma, err := a.Stream(path).Read(ctx, "edge1", 0, 0, ReadOptions{Limit: 1000})
		if err != nil {
			return err
		}
		mb, err := b.Stream(path).Read(ctx, "edge1", 0, 0, ReadOptions{Limit: 1000})
		if err != nil {
			return err
		}
		if len(ma) != len(mb) {
			return fmt.Errorf("%s: %d messages, %d after restore", path, len(ma), len(mb))
		}
		for i := range ma {
			if ma[i].Offset != mb[i].Offset || !bytes.Equal(ma[i].Value, mb[i].Value) {
				return fmt.Errorf("%s: message %d differs after restore", path, i)
			}
		}
	case KindTable:
		da, err := a.Table(path).Get(ctx, "pump-2")
		if err != nil {
			return err
		}
		db, err := b.Table(path).Get(ctx, "pump-2")
		if err != nil || !bytes.Equal(da.Value, db.Value) {
			return fmt.Errorf("%s: pump-2 %s, after restore %v %v", path, da.Value, db, err)
		}
	default:
		if ia.Size != ib.Size || ia.SHA256 != ib.SHA256 {
			return fmt.Errorf("%s: %d bytes %s, after restore %d %s", path, ia.Size, ia.SHA256, ib.Size, ib.SHA256)
		}
	}
	return nil
}
