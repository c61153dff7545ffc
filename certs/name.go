package certs

import (
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// Kind says what a certificate identifies.
type Kind string

// The kinds of leaf certificates.
const (
	KindDevice  Kind = "device"  // a device, signed by the device CA
	KindGateway Kind = "gateway" // a device gateway's server certificate, signed by the device CA
	KindNode    Kind = "node"    // an edge or core node, signed by the fabric CA
)

// Node roles, the <role> of weft://node/<role>/<name>.
const (
	EdgeNode = "edge"
	CoreNode = "core"
)

// maxName is the longest id, class or name accepted.
const maxName = 128

// Identity is who a leaf certificate names, read from its single weft URI
// SAN: weft://device/<class>/<id>, weft://gateway/<name> or
// weft://node/<role>/<name>.
type Identity struct {
	Kind  Kind
	ID    string // device id (devices only)
	Class string // device class (devices only)
	Role  string // EdgeNode or CoreNode (nodes only)
	Name  string // gateway or node name

	Serial   *big.Int  // certificate serial number, to match against revocations
	NotAfter time.Time // end of the certificate's validity
}

// URI returns the identity as the weft URI carried in its certificate.
func (id Identity) URI() string {
	switch id.Kind {
	case KindDevice:
		return "weft://device/" + id.Class + "/" + id.ID
	case KindNode:
		return "weft://node/" + id.Role + "/" + id.Name
	case KindGateway:
		return "weft://gateway/" + id.Name
	}
	return ""
}

// String returns the identity's URI.
func (id Identity) String() string { return id.URI() }

// ValidName reports whether s may be used as a device id, device class,
// gateway or node name: 1 to 128 characters from [A-Za-z0-9._-], and not
// "." or "..". Such names are safe as MQTT topic levels, store topics and
// file names.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > maxName || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// checkName returns ErrInvalidName, saying which field, unless ValidName(s).
func checkName(field, s string) error {
	if !ValidName(s) {
		return fmt.Errorf("%w: %s %q: want 1 to %d characters from [A-Za-z0-9._-], not . or ..", ErrInvalidName, field, s, maxName)
	}
	return nil
}

// checkIdentity validates the names of id for its kind.
func checkIdentity(id Identity) error {
	switch id.Kind {
	case KindDevice:
		if err := checkName("device id", id.ID); err != nil {
			return err
		}
		return checkName("device class", id.Class)
	case KindNode:
		if id.Role != EdgeNode && id.Role != CoreNode {
			return fmt.Errorf("%w: node role %q: want %s or %s", ErrInvalidName, id.Role, EdgeNode, CoreNode)
		}
		return checkName("node name", id.Name)
	case KindGateway:
		return checkName("gateway name", id.Name)
	}
	return fmt.Errorf("%w: kind %q", ErrInvalidName, id.Kind)
}

// parseURI reads a weft URI. It accepts only the canonical form that URI
// returns: no user, port, query, fragment or escapes.
func parseURI(u *url.URL) (Identity, error) {
	bad := func(why string) (Identity, error) {
		return Identity{}, fmt.Errorf("%w: %q: %s", ErrMalformedIdentity, u.String(), why)
	}
	if u.Opaque != "" || u.Host == "" {
		return bad("want weft://<kind>/...")
	}
	var id Identity
	seg := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	switch Kind(u.Host) {
	case KindDevice:
		if len(seg) != 2 {
			return bad("want weft://device/<class>/<id>")
		}
		id = Identity{Kind: KindDevice, Class: seg[0], ID: seg[1]}
	case KindNode:
		if len(seg) != 2 {
			return bad("want weft://node/<role>/<name>")
		}
		id = Identity{Kind: KindNode, Role: seg[0], Name: seg[1]}
	case KindGateway:
		if len(seg) != 1 {
			return bad("want weft://gateway/<name>")
		}
		id = Identity{Kind: KindGateway, Name: seg[0]}
	default:
		return bad("unknown kind")
	}
	if err := checkIdentity(id); err != nil {
		return bad(strings.TrimPrefix(err.Error(), "certs: "))
	}
	if u.String() != id.URI() {
		return bad("not in canonical form")
	}
	return id, nil
}
