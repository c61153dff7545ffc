package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// EnsureGateway issues and saves the gateway certificate of name, unless
// its files are there already: for tools that set up a fabric and start it
// again on the same directory.
func (a *Authority) EnsureGateway(name string, hosts []string) error {
	return a.ensure(KindGateway, name, func() (*Issued, error) { return a.IssueGateway(name, hosts, 0) })
}

// EnsureNode is EnsureGateway for a node certificate.
func (a *Authority) EnsureNode(role, name string, hosts []string) error {
	return a.ensure(KindNode, name, func() (*Issued, error) { return a.IssueNode(role, name, hosts, 0) })
}

func (a *Authority) ensure(kind Kind, name string, issue func() (*Issued, error)) error {
	cf, _ := Files(a.Dir, kind, name)
	if _, err := os.Stat(cf); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	iss, err := issue()
	if err != nil {
		return err
	}
	_, _, err = a.Save(iss)
	return err
}

// ServingPair loads what a node presents and trusts on one kind of
// connection: the key pair of its certificate id (a gateway's, or a node's
// of its role for sync links), and the pool of the CA that signs its peers
// on those connections (the device CA for a gateway, the fabric CA for a
// node).
func (a *Authority) ServingPair(id Identity) (*KeyPair, *x509.CertPool, error) {
	kind, name := id.Kind, id.Name
	ca, which, issue := a.DeviceCA, "device", "gateway --name "+name+" --host HOST"
	if kind == KindNode {
		ca, which, issue = a.FabricCA, "fabric", "node --role "+id.Role+" --name "+name+" --host HOST"
	}
	if ca == nil {
		return nil, nil, fmt.Errorf("%w: %s holds no %s CA certificate", ErrNoCA, a.Dir, which)
	}
	certFile, keyFile := Files(a.Dir, kind, name)
	pair, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%s certificate of %s (issue it with `weft certs issue %s`): %w", kind, name, issue, err)
	}
	pool, err := Pool(ca.PEM)
	if err != nil {
		return nil, nil, err
	}
	return pair, pool, nil
}
