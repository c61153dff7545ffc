package firmware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"strconv"
	"testing"

	"github.com/weft-io/weft/store"
)

// chunkRequestCases feed TestParseChunkRequest and seed
// FuzzParseChunkRequest.
var chunkRequestCases = []struct {
	in string
	ok bool
}{
	{`{"id":"a1","name":"fw","version":"1.2.0","file":"image","offset":0,"length":65536}`, true},
	{`{"id":"a1","name":"fw","version":"1.2.0","file":"manifest","offset":10}`, true},
	{`{"id":"a1","name":"fw","version":"1.2.0","file":"image","offset":0,"length":65537}`, false},
	{`{"id":"a1","name":"fw","version":"1.2.0","file":"image","offset":-1}`, false},
	{`{"id":"a1","name":"fw","version":"1.2","file":"image","offset":0}`, false},
	{`{"id":"","name":"fw","version":"1.2.0","file":"image","offset":0}`, false},
	{`{"id":"a1","name":"../x","version":"1.2.0","file":"image","offset":0}`, false},
	{`{"id":"a1","name":"fw","version":"1.2.0","file":"agent.json","offset":0}`, false},
	{`{"id":"a1","name":"fw","version":"1.2.0","file":"image","offset":0,"extra":1}`, false},
	{`{"id":"a1","name":"fw","version":"1.2.0","file":"image","offset":0} {}`, false},
	{`[]`, false},
	{``, false},
}

func TestParseChunkRequest(t *testing.T) {
	for _, tc := range chunkRequestCases {
		r, _, err := ParseChunkRequest([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok %v", tc.in, err, tc.ok)
		}
		if err == nil && (r.Length <= 0 || r.Length > MaxChunk) {
			t.Errorf("%s: length %d", tc.in, r.Length)
		}
	}
}

func FuzzParseChunkRequest(f *testing.F) {
	for _, tc := range chunkRequestCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, v, err := ParseChunkRequest(b)
		if err != nil {
			return
		}
		if r.ID == "" || len(r.ID) > 64 || !validReleaseName(r.Name) || v.String() != r.Version ||
			r.Offset < 0 || r.Length <= 0 || r.Length > MaxChunk || (r.File != ChunkFileImage && r.File != ChunkFileManifest) {
			t.Fatalf("accepted %q as %+v", b, r)
		}
	})
}

// TestChunkServerAnswer asks an edge's store for pieces of a release as
// devices of its class and of another would, and checks each answer: its
// stream topic and delivery headers, its properties, its bytes.
func TestChunkServerAnswer(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	signer := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	keys := KeySet{Version: 1, Threshold: 1, Keys: []Key{NewKey(signer.Public().(ed25519.PublicKey))}}
	img := make([]byte, store.ChunkSize+MaxChunk+MaxChunk/2)
	for i := range img {
		img[i] = byte(i * 31)
	}
	m := Manifest{Name: "fw", Version: MustVersion("1.2.0"), Class: "thermo", SHA256: sha256.Sum256(img), Size: int64(len(img))}
	signed, err := Sign(m, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&Registry{Store: st, Keys: func() (KeySet, error) { return keys, nil }}).Publish(ctx, signed, bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
	req := func(dev, class, topic, body string) store.Message {
		return store.Message{Value: []byte(body), Headers: map[string]string{headerDevice: dev, headerClass: class, headerMQTTTopic: topic}}
	}
	ask := func(file string, off, length int64) string {
		return `{"id":"q","name":"fw","version":"1.2.0","file":"` + file + `","offset":` + strconv.FormatInt(off, 10) + `,"length":` + strconv.FormatInt(length, 10) + `}`
	}
	own := "devices/t1/firmware/chunks/request"
	for _, tc := range []struct {
		name    string
		msg     store.Message
		answer  bool
		errProp string
		want    []byte
	}{
		{"telemetry", req("t1", "thermo", "devices/t1/telemetry", `{}`), false, "", nil},
		{"another device's topic", req("t1", "thermo", "devices/t2/firmware/chunks/request", ask("image", 0, 10)), false, "", nil},
		{"image start", req("t1", "thermo", own, ask("image", 0, 1000)), true, "", img[:1000]},
		{"image across a store chunk", req("t1", "thermo", own, ask("image", store.ChunkSize-100, MaxChunk)), true, "", img[store.ChunkSize-100 : store.ChunkSize-100+MaxChunk]},
		{"image tail", req("t1", "thermo", own, ask("image", int64(len(img))-7, MaxChunk)), true, "", img[len(img)-7:]},
		{"image end", req("t1", "thermo", own, ask("image", int64(len(img)), MaxChunk)), true, "", nil},
		{"past the end", req("t1", "thermo", own, ask("image", int64(len(img))+1, MaxChunk)), true, ChunkErrRange, nil},
		{"manifest", req("t1", "thermo", own, ask("manifest", 0, MaxChunk)), true, "", signed},
		{"manifest piece", req("t1", "thermo", own, ask("manifest", 5, 10)), true, "", signed[5:15]},
		{"other class", req("t1", "pump", own, ask("image", 0, 10)), true, ChunkErrWrongClass, nil},
		{"unknown release", req("t1", "thermo", own, `{"id":"q","name":"fw","version":"9.9.9","file":"image","offset":0}`), true, ChunkErrNotFound, nil},
		{"malformed", req("t1", "thermo", own, `{"id":"q"`), true, ChunkErrBadRequest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, ok := (&ChunkServer{Store: st}).Answer(ctx, tc.msg)
			if ok != tc.answer {
				t.Fatalf("answered %v, want %v", ok, tc.answer)
			}
			if !ok {
				return
			}
			if a.Path != store.UpdatesStream || a.Topic != "local/device/t1" || len(a.Messages) != 1 {
				t.Fatalf("answer to %s topic %s with %d messages", a.Path, a.Topic, len(a.Messages))
			}
			h := a.Messages[0].Headers
			if h[headerSubtopic] != ChunkSubtopic || h[headerRetain] != "false" || h[headerQoS] != "0" {
				t.Fatalf("delivery headers %v", h)
			}
			if h[ChunkPropError] != tc.errProp {
				t.Fatalf("error %q, want %q", h[ChunkPropError], tc.errProp)
			}
			if tc.errProp == "" && !bytes.Equal(a.Messages[0].Value, tc.want) {
				t.Fatalf("%d bytes, want %d", len(a.Messages[0].Value), len(tc.want))
			}
			if tc.errProp != ChunkErrBadRequest && h[ChunkPropRequest] != "q" {
				t.Fatalf("request id %q", h[ChunkPropRequest])
			}
		})
	}
}
