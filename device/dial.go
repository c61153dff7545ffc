package device

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/certs"
)

// Credentials returns a TLS certificate for each id, from the device
// certificates in dir, issuing (with class) and saving the ones missing
// when dir holds the device CA key. It also returns the device CA pool
// that gateways are verified against.
func Credentials(dir string, ids []string, class string) ([]tls.Certificate, *x509.CertPool, error) {
	auth, err := certs.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	if auth.DeviceCA == nil {
		return nil, nil, fmt.Errorf("device: %s holds no device CA certificate", dir)
	}
	pool, err := certs.Pool(auth.DeviceCA.PEM)
	if err != nil {
		return nil, nil, err
	}
	out := make([]tls.Certificate, len(ids))
	var missing []string
	var where []int
	for i, id := range ids {
		cf, kf := certs.Files(dir, certs.KindDevice, id)
		c, err := tls.LoadX509KeyPair(cf, kf)
		if errors.Is(err, fs.ErrNotExist) {
			missing, where = append(missing, id), append(where, i)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("device: %s: %w", id, err)
		}
		out[i] = c
	}
	if len(missing) > 0 {
		issued, err := auth.IssueDevices(missing, class, 0)
		if err != nil {
			return nil, nil, err
		}
		for j, iss := range issued {
			if _, _, err := auth.Save(iss); err != nil {
				return nil, nil, err
			}
			c, err := tls.X509KeyPair(iss.CertPEM, iss.KeyPEM)
			if err != nil {
				return nil, nil, err
			}
			out[where[j]] = c
		}
	}
	return out, pool, nil
}

// DialConfig says how to reach a gateway.
type DialConfig struct {
	// Addr is the gateway's host:port.
	Addr string
	// ServerName is the name the gateway's certificate must carry; default
	// the host of Addr.
	ServerName string
	// Roots is the device CA pool the gateway is verified against.
	Roots *x509.CertPool
	// LocalAddr, if set, is the local IP to connect from (loopback tests
	// spread many connections over 127.0.0.x).
	LocalAddr string
	// Timeout bounds the TCP and TLS handshake. Default 10 s.
	Timeout time.Duration
}

// DialTLS opens a mutual-TLS connection to the gateway with cert.
func DialTLS(ctx context.Context, dc DialConfig, cert tls.Certificate) (*tls.Conn, error) {
	host, _, err := net.SplitHostPort(dc.Addr)
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	if dc.ServerName == "" {
		dc.ServerName = host
	}
	if dc.Timeout == 0 {
		dc.Timeout = 10 * time.Second
	}
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: dc.Timeout},
		Config: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			RootCAs:      dc.Roots,
			ServerName:   dc.ServerName,
			Certificates: []tls.Certificate{cert},
		},
	}
	if dc.LocalAddr != "" {
		d.NetDialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(dc.LocalAddr)}
	}
	conn, err := d.DialContext(ctx, "tcp", dc.Addr)
	if err != nil {
		return nil, fmt.Errorf("device: dial %s: %w", dc.Addr, err)
	}
	return conn.(*tls.Conn), nil
}

// Connect dials the gateway and opens an MQTT 5 session as device id.
// onPublish, if not nil, receives the messages the gateway sends down.
func Connect(ctx context.Context, dc DialConfig, id string, cert tls.Certificate, cleanStart bool, onPublish func(paho.PublishReceived) (bool, error)) (*paho.Client, error) {
	conn, err := DialTLS(ctx, dc, cert)
	if err != nil {
		return nil, err
	}
	// paho writes a packet in several Write calls; the lock keeps packets
	// written from several goroutines whole.
	cfg := paho.ClientConfig{ClientID: id, Conn: packets.NewThreadSafeConn(conn)}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onPublish}
	}
	c := paho.NewClient(cfg)
	cp := &paho.Connect{ClientID: id, KeepAlive: 60, CleanStart: cleanStart}
	if !cleanStart {
		exp := uint32(3600)
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &exp}
	}
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		if ack != nil {
			return nil, fmt.Errorf("device: connect %s: reason 0x%02x %s", id, ack.ReasonCode, ack.Properties.ReasonString)
		}
		return nil, fmt.Errorf("device: connect %s: %w", id, err)
	}
	return c, nil
}

// rss reads the resident set size of process pid from /proc, in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, err
	}
	var size, res int64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		return 0, err
	}
	return res * int64(os.Getpagesize()), nil
}
