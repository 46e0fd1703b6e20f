package hub

import (
	"fmt"
	"time"

	"github.com/tandem-sync/tandem/sync/wire"
)

// Access is what a connection may do with a document.
type Access int

// Access levels; each includes the ones before it.
const (
	// AccessNone: the document answers doc-unavailable and reveals nothing,
	// not even whether it exists.
	AccessNone Access = iota
	// AccessRead: the peer receives the document and every change, but
	// changes it sends are never applied, stored or relayed.
	AccessRead
	// AccessWrite: full access.
	AccessWrite
)

// String returns "none", "read" or "write", as tokens spell them.
func (a Access) String() string {
	switch a {
	case AccessNone:
		return "none"
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	}
	return fmt.Sprintf("Access(%d)", int(a))
}

// Grants decides a connection's access per document.
type Grants interface {
	Access(doc wire.DocID) Access
}

// Session says who is on a connection. The zero Session is an anonymous
// peer with write access to every document.
type Session struct {
	// Grants decides access per document; nil grants write access to all.
	Grants Grants
	// TokenID is the token's jti, so that a revocation can find the
	// connections that use it. Empty for anonymous peers.
	TokenID string
	// Subject names the principal in logs.
	Subject string
	// Expires is when the token expires: the connection is closed then
	// with wire.CloseTokenExpired. Zero means never.
	Expires time.Time
}

func (s Session) access(doc wire.DocID) Access {
	if s.Grants == nil {
		return AccessWrite
	}
	return s.Grants.Access(doc)
}
