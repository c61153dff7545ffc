package wire

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
)

// nodeTLS issues a node certificate and returns its side of a link.
func nodeTLS(t *testing.T, auth *certs.Authority, dir, role, name string) TLSConfig {
	t.Helper()
	iss, err := auth.IssueNode(role, name, []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := auth.Save(iss)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := certs.LoadKeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certs.Pool(auth.FabricCA.PEM)
	if err != nil {
		t.Fatal(err)
	}
	return TLSConfig{Certificate: pair, FabricCAs: pool}
}

func newAuthority(t *testing.T) (*certs.Authority, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := certs.Init(dir, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return auth, dir
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// serve accepts connections and runs the server handshake on each, sending
// the outcome of each to the returned channel.
func serve(t *testing.T, ln *Listener) <-chan error {
	out := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				st, err := c.AcceptStream(ctx)
				if err != nil {
					out <- err
					return
				}
				peer, err := Peer(c, time.Now())
				if err != nil {
					out <- err
					return
				}
				conn := NewConn(st, st)
				_, err = ServerHandshake(conn, peer.URI(), func(h *Hello) (*Welcome, error) {
					return &Welcome{Identity: "weft://node/core/core1", Streams: h.Streams}, nil
				})
				if err != nil {
					Close(c, err)
				}
				out <- err
			}()
		}
	}()
	return out
}

func TestLinkHandshake(t *testing.T) {
	auth, dir := newAuthority(t)
	core := nodeTLS(t, auth, dir, certs.CoreNode, "core1")
	edge := nodeTLS(t, auth, dir, certs.EdgeNode, "edge1")
	ln, err := Listen("127.0.0.1:0", ServerTLS(core), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	results := serve(t, ln)

	ctx := ctxT(t)
	c, err := Dial(ctx, ln.Addr().String(), ClientTLS(edge), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(c, nil)
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := Peer(c, time.Now())
	if err != nil || peer.Role != certs.CoreNode || peer.Name != "core1" {
		t.Fatalf("peer %+v, %v", peer, err)
	}
	w, err := ClientHandshake(NewConn(st, st), &Hello{Identity: "weft://node/edge/edge1", Streams: []StreamSpec{{Path: "/uplink/events", Dir: Up}}}, peer.URI())
	if err != nil {
		t.Fatal(err)
	}
	if w.Version != Version || len(w.Streams) != 1 {
		t.Fatalf("welcome %+v", w)
	}
	if err := <-results; err != nil {
		t.Fatalf("server: %v", err)
	}
	if cs := c.ConnectionState(); cs.Used0RTT || cs.TLS.Version != 0x0304 {
		t.Fatalf("0-RTT %v, TLS version %#x", cs.Used0RTT, cs.TLS.Version)
	}
}

func TestLinkRoles(t *testing.T) {
	auth, dir := newAuthority(t)
	core := nodeTLS(t, auth, dir, certs.CoreNode, "core1")
	core2 := nodeTLS(t, auth, dir, certs.CoreNode, "core2")
	edge := nodeTLS(t, auth, dir, certs.EdgeNode, "edge1")
	edge2 := nodeTLS(t, auth, dir, certs.EdgeNode, "edge2")
	other, odir := newAuthority(t)
	stranger := nodeTLS(t, other, odir, certs.EdgeNode, "edge1")
	stranger.FabricCAs = edge.FabricCAs // trusts our CA, but its certificate is from another

	for _, tc := range []struct {
		name         string
		server, dial TLSConfig
		serverIsEdge bool
	}{
		{"core dials core", core, core2, false},
		{"edge listens", edge2, edge, true},
		{"certificate of another CA", core, stranger, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stc := ServerTLS(tc.server)
			if tc.serverIsEdge {
				stc.VerifyConnection = nil // a misconfigured edge serving: the client must still refuse it
			}
			ln, err := Listen("127.0.0.1:0", stc, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept(context.Background())
					if err != nil {
						return
					}
					c.AcceptStream(context.Background())
				}
			}()
			ctx := ctxT(t)
			c, err := Dial(ctx, ln.Addr().String(), ClientTLS(tc.dial), nil)
			if err == nil {
				// TLS 1.3: the server checks the client certificate after
				// the client's handshake completes; the refusal closes the
				// connection.
				st, err2 := c.OpenStreamSync(ctx)
				if err2 == nil {
					st.Write([]byte("x"))
					_, err2 = st.Read(make([]byte, 1))
				}
				if err2 == nil {
					t.Fatal("connection accepted")
				}
				Close(c, nil)
			}
		})
	}
}

func TestLinkRefusesGarbageAndOldVersions(t *testing.T) {
	auth, dir := newAuthority(t)
	core := nodeTLS(t, auth, dir, certs.CoreNode, "core1")
	edge := nodeTLS(t, auth, dir, certs.EdgeNode, "edge1")
	ln, err := Listen("127.0.0.1:0", ServerTLS(core), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	results := serve(t, ln)
	ctx := ctxT(t)

	old, _ := appendFrame(nil, 0, &Hello{MinVersion: 0, MaxVersion: 0, Identity: "weft://node/edge/edge1"})
	future, _ := appendFrame(nil, Version+1, &Hello{MinVersion: Version + 1, MaxVersion: Version + 1, Identity: "weft://node/edge/edge1"})
	oldRange, _ := AppendFrame(nil, &Hello{MinVersion: 0, MaxVersion: 0, Identity: "weft://node/edge/edge1"})
	liar, _ := AppendFrame(nil, &Hello{MinVersion: 1, MaxVersion: 1, Identity: "weft://node/edge/someone-else"})
	for _, tc := range []struct {
		name string
		send []byte
		want error
	}{
		{"garbage", []byte("\x16\x03\x01 hello, is this TLS? \x00\x00\x00\x00\x00\x00"), ErrProtocol},
		{"old frame version", old, ErrVersion},
		{"future frame version", future, ErrVersion},
		{"old hello versions", oldRange, ErrVersion},
		{"lying identity", liar, ErrIdentity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(ctx, ln.Addr().String(), ClientTLS(edge), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer Close(c, nil)
			st, err := c.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			// The server answers with an Error frame naming the problem...
			m, err := NewConn(st, st).Recv()
			if err == nil {
				we, ok := m.(*Error)
				if !ok {
					t.Fatalf("server answered %T", m)
				}
				if !errors.Is(we, tc.want) {
					t.Fatalf("server said %v, want %v", we, tc.want)
				}
				t.Logf("server said: %v", we)
			}
			// ...and refuses on its side with the same error.
			select {
			case serr := <-results:
				if !errors.Is(serr, tc.want) {
					t.Fatalf("server error %v, want %v", serr, tc.want)
				}
			case <-ctx.Done():
				t.Fatal("server did not refuse")
			}
			// It closes the connection with the code.
			<-c.Context().Done()
			if code := CodeOf(context.Cause(c.Context())); code != CodeOf(tc.want) {
				t.Fatalf("connection closed with %v, want %v", context.Cause(c.Context()), tc.want)
			}
		})
	}

	// After all that, a good client still gets in.
	c, err := Dial(ctx, ln.Addr().String(), ClientTLS(edge), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(c, nil)
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	peer, _ := Peer(c, time.Now())
	if _, err := ClientHandshake(NewConn(st, st), &Hello{Identity: "weft://node/edge/edge1"}, peer.URI()); err != nil {
		t.Fatal(err)
	}
	if err := <-results; err != nil {
		t.Fatal(err)
	}
}

func TestClientRefusesUnknownWelcomeVersion(t *testing.T) {
	auth, dir := newAuthority(t)
	core := nodeTLS(t, auth, dir, certs.CoreNode, "core1")
	edge := nodeTLS(t, auth, dir, certs.EdgeNode, "edge1")
	ln, err := Listen("127.0.0.1:0", ServerTLS(core), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverSaw := make(chan error, 1)
	go func() {
		c, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		st, err := c.AcceptStream(context.Background())
		if err != nil {
			return
		}
		conn := NewConn(st, st)
		conn.Recv()
		// A server of a newer protocol that answers in a version frame the
		// client knows, but picks a version the client does not speak.
		conn.Send(&Welcome{Version: Version + 5, Identity: "weft://node/core/core1"})
		m, err := conn.Recv()
		if err == nil {
			if we, ok := m.(*Error); ok {
				err = we
			}
		}
		serverSaw <- err
	}()
	ctx := ctxT(t)
	c, err := Dial(ctx, ln.Addr().String(), ClientTLS(edge), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(c, nil)
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ClientHandshake(NewConn(st, st), &Hello{Identity: "weft://node/edge/edge1"}, "weft://node/core/core1")
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("client: %v", err)
	}
	if err := <-serverSaw; !errors.Is(err, ErrVersion) {
		t.Fatalf("server was told %v", err)
	}
}
