package certs

import (
	"errors"
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
