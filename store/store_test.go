package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTest(t testing.TB, mod ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{Dir: t.TempDir(), Name: "node1", MinFreeBytes: -1, MemTableSize: 16 << 20, RetentionInterval: -1}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func msgs(vals ...string) []Message {
	out := make([]Message, len(vals))
	for i, v := range vals {
		out[i] = Message{Value: []byte(v)}
	}
	return out
}

func values(ms []Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Value))
	}
	return out
}

func TestWellKnown(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for _, p := range []string{EventsStream, ByDeviceStream, UplinkStream, UpdatesStream, AuditStream, ShadowChanges} {
		if info, err := s.Stat(ctx, p); err != nil || info.Kind != KindStream {
			t.Errorf("Stat(%s) = %+v, %v; want a stream", p, info, err)
		}
	}
	if info, err := s.Stat(ctx, ShadowsTable); err != nil || info.Kind != KindTable || info.ChangeStream != ShadowChanges {
		t.Errorf("Stat(%s) = %+v, %v", ShadowsTable, info, err)
	}
	var names []string
	for _, v := range s.Volumes() {
		names = append(names, v.Name)
	}
	for _, w := range WellKnownVolumes {
		if !strings.Contains(strings.Join(names, ","), w) {
			t.Errorf("volume %s missing from %v", w, names)
		}
	}
	if err := s.Delete(ctx, EventsStream); !errors.Is(err, ErrInvalid) {
		t.Errorf("deleting a well-known stream: %v, want ErrInvalid", err)
	}
}

func TestStreamAppendRead(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.CreateStream(ctx, "/telemetry/s", StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	st := s.Stream("/telemetry/s")
	pos, err := st.Append(ctx, "a", msgs("m0", "m1", "m2")...)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pos {
		if p.Offset != uint64(i) || p.Partition != 0 {
			t.Fatalf("pos[%d] = %+v", i, p)
		}
	}
	pos, _ = st.Append(ctx, "a", Message{Key: []byte("k"), Value: []byte("m3"), Headers: map[string]string{"device": "d1"}})
	if pos[0].Offset != 3 {
		t.Fatalf("fourth append at %d, want 3", pos[0].Offset)
	}
	got, err := st.Read(ctx, "a", 0, 1, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := values(got); strings.Join(v, ",") != "m1,m2,m3" {
		t.Fatalf("read from 1 = %v", v)
	}
	if got[2].Headers["device"] != "d1" || string(got[2].Key) != "k" || got[2].Offset != 3 || got[2].Timestamp.IsZero() {
		t.Fatalf("message 3 = %+v", got[2])
	}
	got, _ = st.Read(ctx, "a", 0, 0, ReadOptions{Limit: 2})
	if len(got) != 2 {
		t.Fatalf("limit 2 gave %d", len(got))
	}
	got, _ = st.Read(ctx, "a", 0, 0, ReadOptions{MaxBytes: 1})
	if len(got) != 1 {
		t.Fatalf("max bytes 1 gave %d messages, want 1", len(got))
	}
	if got, _ := st.Read(ctx, "a", 0, 4, ReadOptions{}); len(got) != 0 {
		t.Fatalf("read at end gave %d", len(got))
	}
	if got, _ := st.Read(ctx, "other", 0, 0, ReadOptions{}); len(got) != 0 {
		t.Fatalf("read of empty topic gave %d", len(got))
	}
	low, next, err := st.Bounds(ctx, "a", 0)
	if err != nil || low != 0 || next != 4 {
		t.Fatalf("bounds = %d %d %v", low, next, err)
	}
}

func TestStreamErrors(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	s.CreateStream(ctx, "/telemetry/s", StreamOptions{Partitions: 2})
	s.CreateTable(ctx, "/telemetry/t", TableOptions{})
	tests := []struct {
		name string
		err  error
		run  func() error
	}{
		{"missing stream", ErrNotFound, func() error { _, err := s.Stream("/telemetry/nope").Append(ctx, "a", msgs("x")...); return err }},
		{"table as stream", ErrWrongKind, func() error { _, err := s.Stream("/telemetry/t").Append(ctx, "a", msgs("x")...); return err }},
		{"empty topic", ErrInvalid, func() error { _, err := s.Stream("/telemetry/s").Append(ctx, "", msgs("x")...); return err }},
		{"NUL topic", ErrInvalid, func() error { _, err := s.Stream("/telemetry/s").Append(ctx, "a\x00b", msgs("x")...); return err }},
		{"bad partition read", ErrBadPartition, func() error { _, err := s.Stream("/telemetry/s").Read(ctx, "a", 2, 0, ReadOptions{}); return err }},
		{"bad partition append", ErrBadPartition, func() error {
			_, err := s.AppendMany(ctx, []AppendRequest{{Path: "/telemetry/s", Topic: "a", Partition: 5, Messages: msgs("x")}})
			return err
		}},
		{"bad path", ErrBadPath, func() error { _, err := s.Stream("telemetry/s").Read(ctx, "a", 0, 0, ReadOptions{}); return err }},
		{"volume as stream", ErrWrongKind, func() error { _, err := s.Stream("/telemetry").Read(ctx, "a", 0, 0, ReadOptions{}); return err }},
		{"missing volume", ErrNotFound, func() error { return s.CreateStream(ctx, "/nope/s", StreamOptions{}) }},
		{"exists", ErrExists, func() error { return s.CreateStream(ctx, "/telemetry/s", StreamOptions{}) }},
		{"bad partitions", ErrInvalid, func() error { return s.CreateStream(ctx, "/telemetry/p", StreamOptions{Partitions: -1}) }},
		{"dot segment", ErrBadPath, func() error { return s.CreateStream(ctx, "/telemetry/a/../b", StreamOptions{}) }},
		{"cursor bad group", ErrBadPath, func() error { return s.Stream("/telemetry/s").SetCursor(ctx, "", "a", 0, 1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
		})
	}
	// Failed appends leave no trace: offsets stay dense.
	pos, err := s.Stream("/telemetry/s").Append(ctx, "a", Message{Key: []byte("k"), Value: []byte("x")})
	if err != nil || pos[0].Offset != 0 {
		t.Fatalf("append after failures: %v %v", pos, err)
	}
}

func TestPartitionsByKey(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	s.CreateStream(ctx, "/telemetry/p", StreamOptions{Partitions: 4})
	st := s.Stream("/telemetry/p")
	first := map[string]int{}
	for i := 0; i < 40; i++ {
		k := fmt.Sprintf("key%d", i%8)
		pos, err := st.Append(ctx, "t", Message{Key: []byte(k), Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := first[k]; ok && p != pos[0].Partition {
			t.Fatalf("key %s moved from partition %d to %d", k, p, pos[0].Partition)
		}
		first[k] = pos[0].Partition
	}
	total := 0
	for p := 0; p < 4; p++ {
		_, next, _ := st.Bounds(ctx, "t", p)
		total += int(next)
		got, _ := st.Read(ctx, "t", p, 0, ReadOptions{})
		for i, m := range got {
			if m.Offset != uint64(i) || m.Partition != p {
				t.Fatalf("partition %d message %d at offset %d partition %d", p, i, m.Offset, m.Partition)
			}
		}
	}
	if total != 40 {
		t.Fatalf("partitions hold %d messages, want 40", total)
	}
}

func TestConcurrentAppendsShareBatches(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	st := s.Stream(EventsStream)
	const writers, each = 32, 50
	var wg sync.WaitGroup
	seen := make(chan uint64, writers*each)
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				pos, err := st.Append(ctx, "edge", Message{Value: []byte(fmt.Sprintf("%d-%d", g, i))})
				if err != nil {
					t.Error(err)
					return
				}
				seen <- pos[0].Offset
			}
		}(g)
	}
	wg.Wait()
	close(seen)
	offs := map[uint64]bool{}
	for o := range seen {
		if offs[o] {
			t.Fatalf("offset %d assigned twice", o)
		}
		offs[o] = true
	}
	got, err := st.Read(ctx, "edge", 0, 0, ReadOptions{Limit: writers * each})
	if err != nil || len(got) != writers*each {
		t.Fatalf("read %d, %v", len(got), err)
	}
	for i, m := range got {
		if m.Offset != uint64(i) {
			t.Fatalf("offset %d at index %d", m.Offset, i)
		}
	}
	// Fewer batches than messages: concurrent appenders shared batches.
	vol, name, _ := SplitPath(EventsStream)
	pfx := partPrefix(vol, name, "edge", 0)
	txn := s.readTxn(0)
	defer txn.Discard()
	it := txn.NewIterator(iterKeys(pfx))
	defer it.Close()
	batches := 0
	for it.Seek(pfx); it.ValidForPrefix(pfx); it.Next() {
		batches++
	}
	if batches >= writers*each {
		t.Fatalf("%d batches for %d messages", batches, writers*each)
	}
	t.Logf("%d messages in %d batches", writers*each, batches)
}

func TestTopicsPaging(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	st := s.Stream(ByDeviceStream)
	for i := 0; i < 25; i++ {
		if _, err := st.Append(ctx, fmt.Sprintf("dev-%02d", i), msgs("x")...); err != nil {
			t.Fatal(err)
		}
	}
	st.Append(ctx, "other", msgs("x")...)
	var all []string
	after := ""
	for {
		page, err := st.Topics(ctx, "dev-", after, 10)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < 10 {
			break
		}
		after = page[len(page)-1]
	}
	if len(all) != 25 || all[0] != "dev-00" || all[24] != "dev-24" {
		t.Fatalf("topics = %v", all)
	}
}

func TestRetention(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := openTest(t, func(c *Config) { c.Now = clock })
	ctx := context.Background()
	s.CreateStream(ctx, "/telemetry/ttl", StreamOptions{TTL: time.Hour})
	s.CreateStream(ctx, "/telemetry/cap", StreamOptions{MaxBytes: 3000})
	ttl, capped := s.Stream("/telemetry/ttl"), s.Stream("/telemetry/cap")
	for i := 0; i < 10; i++ {
		ttl.Append(ctx, "t", Message{Value: []byte("v"), Timestamp: now.Add(time.Duration(i) * 10 * time.Minute)})
		capped.Append(ctx, "t", Message{Value: bytes.Repeat([]byte("x"), 500)})
	}
	mu.Lock()
	now = now.Add(2 * time.Hour) // messages 0..4 are older than an hour
	mu.Unlock()
	if err := s.EnforceRetention(ctx); err != nil {
		t.Fatal(err)
	}
	low, next, _ := ttl.Bounds(ctx, "t", 0)
	if low != 6 || next != 10 {
		t.Fatalf("ttl bounds %d..%d, want 6..10", low, next)
	}
	if _, err := ttl.Read(ctx, "t", 0, 2, ReadOptions{}); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("read below low-water: %v", err)
	}
	if got, _ := ttl.Read(ctx, "t", 0, 6, ReadOptions{}); len(got) != 4 {
		t.Fatalf("read from low-water gave %d", len(got))
	}
	low, next, _ = capped.Bounds(ctx, "t", 0)
	if low == 0 || next != 10 || low > 5 {
		t.Fatalf("capped bounds %d..%d", low, next)
	}
	// Everything expires: the low-water mark is the end, and appends
	// continue the offsets.
	mu.Lock()
	now = now.Add(24 * time.Hour)
	mu.Unlock()
	s.EnforceRetention(ctx)
	if low, next, _ = ttl.Bounds(ctx, "t", 0); low != 10 || next != 10 {
		t.Fatalf("after full expiry %d..%d", low, next)
	}
	pos, _ := ttl.Append(ctx, "t", msgs("new")...)
	if pos[0].Offset != 10 {
		t.Fatalf("append after full expiry at %d, want 10", pos[0].Offset)
	}
}

func TestCursors(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	st := s.Stream(EventsStream)
	if _, ok, err := st.Cursor(ctx, "g", "t", 0); ok || err != nil {
		t.Fatalf("fresh cursor: %v %v", ok, err)
	}
	st.SetCursor(ctx, "g", "t", 0, 42)
	st.SetCursor(ctx, "g", "t", 0, 43)
	if off, ok, err := st.Cursor(ctx, "g", "t", 0); off != 43 || !ok || err != nil {
		t.Fatalf("cursor = %d %v %v", off, ok, err)
	}
}

func TestReadWait(t *testing.T) {
	s := openTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := s.Stream(UpdatesStream)
	changed := st.Changed()
	got := make(chan []Message)
	go func() {
		m, err := st.ReadWait(ctx, "all", 0, 0, ReadOptions{})
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	st.Append(ctx, "all", msgs("hello")...)
	if m := <-got; len(m) != 1 || string(m[0].Value) != "hello" {
		t.Fatalf("ReadWait = %v", m)
	}
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("Changed not closed by an append")
	}
	short, c2 := context.WithCancel(ctx)
	c2()
	if _, err := st.ReadWait(short, "all", 0, 1, ReadOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadWait on a canceled context: %v", err)
	}
}

func TestCorruptBatch(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	st := s.Stream(EventsStream)
	st.Append(ctx, "e", msgs("a", "b")...)
	vol, name, _ := SplitPath(EventsStream)
	key := batchKey(partPrefix(vol, name, "e", 0), 0)
	txn := s.readTxn(0)
	item, err := txn.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	val, _ := item.ValueCopy(nil)
	txn.Discard()
	val[len(val)-1] ^= 0xff
	err = s.do(ctx, 0, false, func(w *wtx) error { return w.set(vol, key, val, 0) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Read(ctx, "e", 0, 0, ReadOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a corrupt batch: %v, want ErrCorrupt", err)
	}
}

func TestTables(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	tb := s.Table(ShadowsTable)
	d, err := tb.Put(ctx, "dev1", json.RawMessage(`{"reported": {"temp": 20, "mode": "auto"}}`))
	if err != nil || d.Version != 1 {
		t.Fatalf("put: %+v %v", d, err)
	}
	d, err = tb.Patch(ctx, "dev1", json.RawMessage(`{"reported": {"temp": 21, "mode": null}, "connected": true}`))
	if err != nil || d.Version != 2 || string(d.Value) != `{"connected":true,"reported":{"temp":21}}` {
		t.Fatalf("patch: %s %+v %v", d.Value, d, err)
	}
	if got, err := tb.Get(ctx, "dev1"); err != nil || got.Version != 2 || string(got.Value) != string(d.Value) {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := tb.Put(ctx, "dev1", json.RawMessage(`{}`), IfVersion(1)); !errors.Is(err, ErrVersion) {
		t.Fatalf("stale CAS: %v", err)
	}
	if _, err := tb.Put(ctx, "dev1", json.RawMessage(`{"a":1}`), IfVersion(2)); err != nil {
		t.Fatalf("CAS: %v", err)
	}
	if _, err := tb.Put(ctx, "dev2", json.RawMessage(`{}`), IfVersion(0)); err != nil {
		t.Fatalf("create-only put: %v", err)
	}
	if _, err := tb.Put(ctx, "dev2", json.RawMessage(`{}`), IfVersion(0)); !errors.Is(err, ErrVersion) {
		t.Fatalf("create-only put of an existing key: %v", err)
	}
	if _, err := tb.Put(ctx, "dev3", json.RawMessage(`{bad`)); !errors.Is(err, ErrBadDocument) {
		t.Fatalf("bad JSON: %v", err)
	}
	if _, err := tb.Patch(ctx, "dev3", json.RawMessage(`[1`)); !errors.Is(err, ErrBadDocument) {
		t.Fatalf("bad patch: %v", err)
	}
	if err := tb.Delete(ctx, "dev2"); err != nil {
		t.Fatal(err)
	}
	if err := tb.Delete(ctx, "dev2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := tb.Get(ctx, "dev2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	for i := 0; i < 12; i++ {
		tb.Put(ctx, fmt.Sprintf("k%02d", i), json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)))
	}
	docs, next, err := tb.Scan(ctx, "k", "", 5)
	if err != nil || len(docs) != 5 || next != "k04" || docs[0].Key != "k00" {
		t.Fatalf("scan page 1: %d %q %v", len(docs), next, err)
	}
	docs, next, _ = tb.Scan(ctx, "k", next, 100)
	if len(docs) != 7 || next != "" || docs[0].Key != "k05" {
		t.Fatalf("scan page 2: %d %q", len(docs), next)
	}
	// Every mutation is in the change stream, in order.
	changes, err := s.Stream(ShadowChanges).Read(ctx, "node1", 0, 0, ReadOptions{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, m := range changes {
		var c Change
		if err := json.Unmarshal(m.Value, &c); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, fmt.Sprintf("%s:%s:%d", c.Op, c.Key, c.Version))
	}
	want := "put:dev1:1,patch:dev1:2,put:dev1:3,put:dev2:1,delete:dev2:2"
	if got := strings.Join(ops[:5], ","); got != want {
		t.Fatalf("changes = %s, want %s", got, want)
	}
	if len(ops) != 5+12 {
		t.Fatalf("%d change records, want 17", len(ops))
	}
}

func TestMergePatchRFC7386(t *testing.T) {
	// The examples of RFC 7386 appendix A.
	tests := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	}
	for _, tc := range tests {
		var target, patch any
		unmarshalJSON([]byte(tc.target), &target)
		unmarshalJSON([]byte(tc.patch), &patch)
		got, _ := json.Marshal(MergePatch(target, patch))
		if string(got) != tc.want {
			t.Errorf("%s + %s = %s, want %s", tc.target, tc.patch, got, tc.want)
		}
	}
}

func TestFiles(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*ChunkSize+1000)/16)
	info, err := s.File("/models/pump/v1.bin").Write(ctx, bytes.NewReader(data))
	if err != nil || info.Size != int64(len(data)) || len(info.SHA256) != 64 {
		t.Fatalf("write: %+v %v", info, err)
	}
	r, _, err := s.File("/models/pump/v1.bin").Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	// Overwrite with a smaller content; empty files work.
	s.File("/models/pump/v1.bin").Write(ctx, strings.NewReader("small"))
	r, info, _ = s.File("/models/pump/v1.bin").Open(ctx)
	if got, _ := io.ReadAll(r); string(got) != "small" || info.Size != 5 {
		t.Fatalf("after overwrite: %q %+v", got, info)
	}
	if _, err := s.File("/models/empty").Write(ctx, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	r, _, _ = s.File("/models/empty").Open(ctx)
	if got, err := io.ReadAll(r); len(got) != 0 || err != nil {
		t.Fatalf("empty file: %q %v", got, err)
	}
	// A file cannot sit under a file, nor replace a stream.
	if _, err := s.File("/models/pump/v1.bin/x").Write(ctx, strings.NewReader("x")); !errors.Is(err, ErrWrongKind) {
		t.Fatalf("file under a file: %v", err)
	}
	if _, err := s.File(EventsStream).Write(ctx, strings.NewReader("x")); !errors.Is(err, ErrWrongKind) {
		t.Fatalf("file over a stream: %v", err)
	}
	if _, _, err := s.File("/models/none").Open(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open missing: %v", err)
	}
	// Old generations are gone: usage is about the live content.
	vi, _ := s.Volume("models")
	if vi.Used > 4096 {
		t.Fatalf("models volume uses %d bytes after overwrite", vi.Used)
	}
}

func TestNamespace(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	s.File("/models/pump/v1.bin").Write(ctx, strings.NewReader("x"))
	s.File("/models/pump/v2.bin").Write(ctx, strings.NewReader("y"))
	s.CreateTable(ctx, "/models/registry", TableOptions{})
	s.Mkdir(ctx, "/models/empty")
	list, err := s.List(ctx, "/models")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range list {
		got = append(got, i.Path+":"+string(i.Kind))
	}
	want := "/models/empty:directory,/models/pump:directory,/models/registry:table"
	if strings.Join(got, ",") != want {
		t.Fatalf("ls /models = %v, want %s", got, want)
	}
	list, _ = s.List(ctx, "/models/pump")
	if len(list) != 2 || list[0].Path != "/models/pump/v1.bin" || list[0].Size != 1 {
		t.Fatalf("ls /models/pump = %+v", list)
	}
	if info, err := s.Stat(ctx, "/models/pump"); err != nil || info.Kind != KindDir {
		t.Fatalf("stat implicit dir: %+v %v", info, err)
	}
	if _, err := s.List(ctx, "/models/nothing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ls missing: %v", err)
	}
	if err := s.CreateStream(ctx, "/models/pump", StreamOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("stream over a directory: %v", err)
	}
	if err := s.Delete(ctx, "/models/empty"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "/models/registry"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "/models/registry"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// Delete then recreate: the new stream starts empty at offset 0.
	s.CreateStream(ctx, "/telemetry/re", StreamOptions{})
	s.Stream("/telemetry/re").Append(ctx, "t", msgs("a", "b")...)
	if err := s.Delete(ctx, "/telemetry/re"); err != nil {
		t.Fatal(err)
	}
	s.CreateStream(ctx, "/telemetry/re", StreamOptions{})
	pos, err := s.Stream("/telemetry/re").Append(ctx, "t", msgs("c")...)
	if err != nil || pos[0].Offset != 0 {
		t.Fatalf("append to recreated stream: %v %v", pos, err)
	}
	// Volumes.
	if err := s.CreateVolume(ctx, "logs", VolumeOptions{TTL: time.Hour, Quota: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateVolume(ctx, "logs", VolumeOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("volume twice: %v", err)
	}
	if err := s.CreateVolume(ctx, "a/b", VolumeOptions{}); !errors.Is(err, ErrBadPath) {
		t.Fatalf("volume with slash: %v", err)
	}
	vi, _ := s.Volume("logs")
	if vi.TTL != time.Hour || vi.Quota != 1<<20 {
		t.Fatalf("volume = %+v", vi)
	}
	// Audit records for create, delete and policy.
	recs, _ := s.Stream(AuditStream).Read(ctx, "node1", 0, 0, ReadOptions{Limit: 1000})
	var actions []string
	for _, m := range recs {
		var r struct{ Action, Object string }
		json.Unmarshal(m.Value, &r)
		actions = append(actions, r.Action+" "+r.Object)
	}
	for _, want := range []string{"object.create /models/registry", "object.delete /models/registry", "volume.create /logs", "object.create /models/pump/v1.bin"} {
		if !strings.Contains(strings.Join(actions, "\n"), want) {
			t.Errorf("audit lacks %q: %v", want, actions)
		}
	}
}

func TestQuota(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	s.CreateVolume(ctx, "small", VolumeOptions{Quota: 64 << 10})
	s.CreateStream(ctx, "/small/s", StreamOptions{})
	st := s.Stream("/small/s")
	big := Message{Value: bytes.Repeat([]byte("x"), 10<<10)}
	var n int
	var err error
	for n = 0; n < 100; n++ {
		if _, err = st.Append(ctx, "t", big); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrQuotaExceeded) || n < 4 || n > 7 {
		t.Fatalf("after %d appends: %v, want ErrQuotaExceeded after about 6", n, err)
	}
	if got, err := st.Read(ctx, "t", 0, 0, ReadOptions{Limit: 100}); err != nil || len(got) != n {
		t.Fatalf("reads go on: %d %v", len(got), err)
	}
	if _, err := s.File("/small/f").Write(ctx, bytes.NewReader(make([]byte, 100<<10))); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("file past quota: %v", err)
	}
	if _, err := s.Table(ShadowsTable).Put(ctx, "d", json.RawMessage(`{}`)); err != nil {
		t.Fatalf("other volumes still take writes: %v", err)
	}
	// Raising the quota lets writes through again.
	s.SetVolume(ctx, "small", VolumeOptions{Quota: 1 << 20})
	if _, err := st.Append(ctx, "t", big); err != nil {
		t.Fatalf("after raising the quota: %v", err)
	}
}

func TestDiskFullRefusesWrites(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.Stream(EventsStream).Append(ctx, "e", msgs("before")...)
	s.Close()
	// A reserve larger than the disk: every write sees a full disk.
	s, err = Open(Config{Dir: dir, MinFreeBytes: 1 << 62, RetentionInterval: -1})
	if err != nil {
		t.Fatalf("open with a full disk: %v", err)
	}
	defer s.Close()
	if _, err := s.Stream(EventsStream).Append(ctx, "e", msgs("after")...); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if _, err := s.Table(ShadowsTable).Put(ctx, "d", json.RawMessage(`{}`)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("put on a full disk: %v", err)
	}
	got, err := s.Stream(EventsStream).Read(ctx, "e", 0, 0, ReadOptions{})
	if err != nil || len(got) != 1 || string(got[0].Value) != "before" {
		t.Fatalf("read on a full disk: %v %v", values(got), err)
	}
}

func TestSnapshots(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	tb := s.Table("/shadows/devices")
	tb.Put(ctx, "a", json.RawMessage(`{"v":1}`))
	tb.Put(ctx, "b", json.RawMessage(`{"v":1}`))
	if _, err := s.CreateSnapshot(ctx, "shadows", "s1"); err != nil {
		t.Fatal(err)
	}
	tb.Put(ctx, "a", json.RawMessage(`{"v":2}`))
	tb.Delete(ctx, "b")
	tb.Put(ctx, "c", json.RawMessage(`{"v":1}`))
	tb.Put(ctx, "d", json.RawMessage(`{"v":1}`))
	tb.Delete(ctx, "d")
	s.CreateSnapshot(ctx, "shadows", "s2")
	tb.Put(ctx, "a", json.RawMessage(`{"v":3}`))

	v1, err := s.At("shadows", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if d, err := v1.Table("/shadows/devices").Get(ctx, "a"); err != nil || string(d.Value) != `{"v":1}` {
		t.Fatalf("a at s1 = %s %v", d.Value, err)
	}
	if _, err := v1.Table("/shadows/devices").Get(ctx, "c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("c at s1: %v", err)
	}
	if _, err := v1.Table("/shadows/devices").Put(ctx, "x", json.RawMessage(`{}`)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write to a snapshot: %v", err)
	}
	if _, err := s.CreateSnapshot(ctx, "shadows", "s1"); !errors.Is(err, ErrExists) {
		t.Fatalf("snapshot twice: %v", err)
	}
	snaps, _ := s.Snapshots(ctx, "shadows")
	if len(snaps) != 2 || snaps[0].Name != "s1" {
		t.Fatalf("snapshots = %+v", snaps)
	}
	// The delta s1 -> s2: a changed, b deleted, c added, d never seen.
	var puts, dels []string
	vol, name, _ := SplitPath("/shadows/devices")
	rowPfx := string(objKey(vol, kindRow, name, ""))[len(volPrefix(vol)):]
	err = s.Delta(ctx, "shadows", "s1", "s2", func(e DeltaEntry) error {
		k := string(e.Key)
		if !strings.HasPrefix(k, rowPfx) {
			return nil
		}
		if e.Delete {
			dels = append(dels, k[len(rowPfx):])
		} else {
			puts = append(puts, k[len(rowPfx):])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(puts, ",") != "a,c" || strings.Join(dels, ",") != "b" {
		t.Fatalf("delta puts %v dels %v", puts, dels)
	}
	if err := s.DeleteSnapshot(ctx, "shadows", "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.At("shadows", "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted snapshot: %v", err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(Config{Dir: dir, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.CreateVolume(ctx, "logs", VolumeOptions{Quota: 1 << 20})
	s.CreateStream(ctx, "/logs/s", StreamOptions{Partitions: 3})
	s.Stream("/logs/s").Append(ctx, "t", msgs("a", "b")...)
	s.CreateSnapshot(ctx, "logs", "snap")
	s.Stream("/logs/s").Append(ctx, "t", msgs("c")...)
	used, _ := s.Volume("logs")
	s.Close()
	s, err = Open(Config{Dir: dir, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vi, _ := s.Volume("logs")
	if vi.Quota != 1<<20 || vi.Used != used.Used {
		t.Fatalf("volume after reopen %+v, before %+v", vi, used)
	}
	total := 0
	for p := 0; p < 3; p++ {
		_, next, _ := s.Stream("/logs/s").Bounds(ctx, "t", p)
		total += int(next)
	}
	if total != 3 {
		t.Fatalf("%d messages after reopen", total)
	}
	if _, err := s.At("logs", "snap"); err != nil {
		t.Fatal(err)
	}
}
