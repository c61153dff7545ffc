package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Benchmarks of the store. Run them with
//
//	go test ./store -run '^$' -bench . -benchtime 200000x
//
// Each reports msgs/s (or ops/s), MB/s and latency quantiles per call.

const benchValue = 200

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkAppend measures durable appends of 200-byte messages from 1, 16
// and 256 concurrent appenders, to one topic and spread over 10k topics,
// with one message per call and with 64 (as a gateway or a bulk producer
// hands them over). Latency is per call.
func BenchmarkAppend(b *testing.B) {
	for _, per := range []int{1, 64} {
		for _, topics := range []int{1, 10000} {
			for _, appenders := range []int{1, 16, 256} {
				b.Run(fmt.Sprintf("per-call=%d/topics=%d/appenders=%d", per, topics, appenders), func(b *testing.B) {
					benchAppend(b, per, topics, appenders)
				})
			}
		}
	}
}

func benchAppend(b *testing.B, per, topics, appenders int) {
	s := openTest(b, func(c *Config) { c.MemTableSize = 64 << 20 })
	ctx := context.Background()
	st := s.Stream(EventsStream)
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("topic-%05d", i)
	}
	batch := make([]Message, per)
	for i := range batch {
		batch[i] = Message{Value: make([]byte, benchValue)}
	}
	var next atomic.Int64
	lats := make([][]time.Duration, appenders)
	b.SetBytes(benchValue)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < appenders; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for next.Add(int64(per)) <= int64(b.N) {
				t0 := time.Now()
				if _, err := st.Append(ctx, names[r.IntN(topics)], batch...); err != nil {
					b.Error(err)
					return
				}
				lats[g] = append(lats[g], time.Since(t0))
			}
		}(g)
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	reportLatency(b, slices.Concat(lats...))
}

// BenchmarkBadgerBaseline is the raw baseline: a Badger WriteBatch with
// SyncWrites, one key per 200-byte message, 1000 messages per commit.
func BenchmarkBadgerBaseline(b *testing.B) {
	db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithSyncWrites(true).WithLogger(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, benchValue)
	b.SetBytes(benchValue)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var lat []time.Duration
	for i := 0; i < b.N; i += 1000 {
		t0 := time.Now()
		wb := db.NewWriteBatch()
		for j := i; j < i+1000 && j < b.N; j++ {
			if err := wb.Set(binary.BigEndian.AppendUint64([]byte("k"), uint64(j)), val); err != nil {
				b.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	reportLatency(b, lat)
}

// BenchmarkRead measures a sequential read of one partition.
func BenchmarkRead(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	st := s.Stream(EventsStream)
	const n = 100000
	batch := make([]Message, 1000)
	for i := range batch {
		batch[i] = Message{Value: make([]byte, benchValue)}
	}
	for i := 0; i < n; i += len(batch) {
		if _, err := st.Append(ctx, "t", batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(benchValue)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var off uint64
	for read := 0; read < b.N; {
		got, err := st.Read(ctx, "t", 0, off, ReadOptions{Limit: 1000})
		if err != nil {
			b.Fatal(err)
		}
		read += len(got)
		off += uint64(len(got))
		if off >= n {
			off = 0
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkTable measures puts (16 concurrent writers) and gets on a table
// holding 1M documents.
func BenchmarkTable(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	if err := s.CreateTable(ctx, "/metrics/bench", TableOptions{}); err != nil {
		b.Fatal(err)
	}
	tb := s.Table("/metrics/bench")
	const docs = 1000000
	doc := json.RawMessage(`{"reported":{"temp":21.5,"mode":"auto","fw":"1.2.3"},"connected":true}`)
	var wg sync.WaitGroup
	var next atomic.Int64
	for g := 0; g < 256; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= docs; i = next.Add(1) {
				if _, err := tb.Put(ctx, fmt.Sprintf("dev-%07d", i), doc); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.Run("put", func(b *testing.B) {
		var n atomic.Int64
		lats := make([][]time.Duration, 16)
		start := time.Now()
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), 2))
				for n.Add(1) <= int64(b.N) {
					t0 := time.Now()
					if _, err := tb.Put(ctx, fmt.Sprintf("dev-%07d", 1+r.IntN(docs)), doc); err != nil {
						b.Error(err)
						return
					}
					lats[g] = append(lats[g], time.Since(t0))
				}
			}(g)
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		reportLatency(b, slices.Concat(lats...))
	})
	b.Run("get", func(b *testing.B) {
		r := rand.New(rand.NewPCG(3, 3))
		lat := make([]time.Duration, 0, b.N)
		start := time.Now()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if _, err := tb.Get(ctx, fmt.Sprintf("dev-%07d", 1+r.IntN(docs))); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		reportLatency(b, lat)
	})
}

// BenchmarkAppendManyTopics is the store's own appends against raw
// per-key Badger in one run: 256 concurrent appenders, one 200-byte
// message per call, each to a topic picked at random among 1M (most
// appends meet a topic the store has not seen lately). The baselines have
// the store's Badger options (managed mode aside) and write one key per
// message, a topic's sequence number in it: badger-txn in a transaction
// of its own, durable when the call returns as the store's appends are
// (Badger commits concurrent transactions together); badger-writebatch
// through one shared WriteBatch, which syncs every few thousand keys and
// tells no caller when its key is durable (an upper bound, not a like
// for like).
//
//	go test ./store -run '^$' -bench AppendManyTopics -benchtime 100000x
func BenchmarkAppendManyTopics(b *testing.B) {
	const topics, appenders = 1 << 20, 256
	val := make([]byte, benchValue)
	// run has the appenders call appendOne b.N times in all, then finish.
	run := func(b *testing.B, appendOne func(r *rand.Rand) error, finish func() error) {
		var next atomic.Int64
		b.SetBytes(benchValue)
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for g := range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), 3))
				for next.Add(1) <= int64(b.N) {
					if err := appendOne(r); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := finish(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	}
	none := func() error { return nil }
	b.Run("store", func(b *testing.B) {
		s := openTest(b, func(c *Config) { c.MemTableSize = 64 << 20 })
		st := s.Stream(EventsStream)
		run(b, func(r *rand.Rand) error {
			_, err := st.Append(b.Context(), fmt.Sprintf("topic-%07d", r.IntN(topics)), Message{Value: val})
			return err
		}, none)
	})
	open := func(b *testing.B) (*badger.DB, func(r *rand.Rand) []byte) {
		db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithSyncWrites(true).WithDetectConflicts(false).
			WithMemTableSize(64 << 20).WithValueThreshold(valueThreshold).WithNumVersionsToKeep(1).WithLogger(nil))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		seqs := make([]atomic.Uint64, topics)
		return db, func(r *rand.Rand) []byte {
			t := r.IntN(topics)
			return binary.BigEndian.AppendUint64(fmt.Appendf(nil, "topic-%07d/", t), seqs[t].Add(1))
		}
	}
	b.Run("badger-txn", func(b *testing.B) {
		db, key := open(b)
		run(b, func(r *rand.Rand) error {
			k := key(r)
			return db.Update(func(txn *badger.Txn) error { return txn.Set(k, val) })
		}, none)
	})
	b.Run("badger-writebatch", func(b *testing.B) {
		db, key := open(b)
		wb := db.NewWriteBatch()
		run(b, func(r *rand.Rand) error { return wb.Set(key(r), val) }, wb.Flush)
	})
}
