// Package broker is the fan-out engine between ws nodes: every message
// published on any node is given a cluster-wide sequence number, kept in a
// window of history, and delivered to every node. The memory broker serves a
// node running alone; the NATS broker (JetStream) serves a cluster.
package broker

import (
	"context"
	"errors"
	"time"
)

// Message is one published Bayeux message as it crosses the cluster.
type Message struct {
	// Seq is the broker's sequence number: strictly increasing in the order
	// messages were accepted, across all channels and all nodes. A
	// session's cursor is the Seq of the last message it was given.
	Seq uint64
	// Channel is the concrete Bayeux channel the message was published on.
	Channel string
	// Payload is the encoded Bayeux message (a JSON object) as the
	// publishing node wants subscribers to receive it, without the
	// sequence number, which the delivering node adds.
	Payload []byte
	// Published is when the broker accepted the message.
	Published time.Time
}

// Broker carries published messages between nodes.
type Broker interface {
	// Publish stores the message in history and fans it out to every node.
	// When it returns without error the message has a sequence number and
	// will be delivered to every node's Subscribe handler and be found by
	// History; messages published on one channel are delivered in the
	// order Publish returned for them.
	Publish(ctx context.Context, channel string, payload []byte) (uint64, error)

	// Subscribe delivers every message published from now on, cluster
	// wide, to h, one at a time and in sequence order. A node calls it once
	// and filters by its own sessions' subscriptions (or, where the broker
	// implements Interest, subscribes by interest instead). h must not block for
	// long: it runs on the broker's delivery goroutine. The returned stop
	// function ends the delivery.
	Subscribe(ctx context.Context, h func(Message)) (stop func(), err error)

	// History returns, in sequence order, the messages with a sequence
	// number above after on channels matching any of patterns (Bayeux
	// patterns, wildcards allowed), up to and including the newest one
	// accepted when History was called. It returns ErrHistoryGone when
	// messages after `after` have already left the history window, so the
	// caller knows that a gap cannot be filled; also when after is beyond
	// the newest sequence number, which means the history was reset and
	// the cursor belongs to an earlier one.
	History(ctx context.Context, patterns []string, after uint64) ([]Message, error)

	// LastSeq returns the sequence number of the newest accepted message,
	// 0 when there is none.
	LastSeq(ctx context.Context) (uint64, error)

	// Sessions is where sessions are saved for another node to restore.
	Sessions() SessionStore

	// Close releases the broker's resources.
	Close() error
}

// Session is what another node needs to take over a client: its identity,
// what it may do, what it subscribed to, and how far it has read.
type Session struct {
	ClientID      string    `json:"client_id"`
	Subscriptions []string  `json:"subscriptions"`
	Cursor        uint64    `json:"cursor"`
	Subject       string    `json:"subject,omitempty"` // authenticated user (JWT sub), empty if anonymous
	Grants        []string  `json:"grants,omitempty"`  // channel patterns carried in the token
	AuthExpires   time.Time `json:"auth_expires,omitzero"`
	Node          string    `json:"node,omitempty"` // node that saved it
	SavedAt       time.Time `json:"saved_at"`
	// Given and LastConnect are for long-polling, where an answer can be
	// lost (the client gave up on it before it arrived): Given is the Seq
	// of the last message in the answer to the /meta/connect whose id is
	// LastConnect, and Cursor is where the client was before that answer.
	// A node resumes a client that repeats LastConnect's id (its retry of
	// the lost request) from Cursor, any other from Given. Zero when
	// unused.
	Given       uint64 `json:"given,omitempty"`
	LastConnect string `json:"last_connect,omitempty"`
	// Held is set when Node saved the session as the node that held its
	// client (a release by a drain or shed, a websocket that closed), not
	// at a handshake: the node that takes it over next received a client
	// that moved (the admin API's received count). Older nodes ignore it.
	Held bool `json:"held,omitempty"`
}

// SessionStore keeps sessions where every node can read them.
//
// Several nodes may change one record at once (with shared sessions, a
// client's requests are spread over the nodes): a node that changes a
// record it read uses LoadRev and Update or DeleteRev, which fail with
// ErrSessionChanged when another node wrote the record in between, and
// then applies its change again to the record as it now is. Save and
// Delete overwrite blindly and are for a node whose copy is the truth.
type SessionStore interface {
	// Save stores s under s.ClientID, replacing any earlier copy.
	Save(ctx context.Context, s Session) error
	// Load returns the session saved under clientID, or ErrNoSession.
	Load(ctx context.Context, clientID string) (Session, error)
	// Delete removes it; deleting a missing session is not an error.
	Delete(ctx context.Context, clientID string) error

	// LoadRev is Load that also returns the record's revision, which
	// changes with every write of the record and is never 0.
	LoadRev(ctx context.Context, clientID string) (Session, uint64, error)
	// Update stores s under s.ClientID only if the stored record's
	// revision is still rev, or, with rev 0, only if there is no record;
	// otherwise it stores nothing and returns ErrSessionChanged. It
	// returns the new revision.
	Update(ctx context.Context, s Session, rev uint64) (uint64, error)
	// DeleteRev removes the record only if its revision is still rev;
	// otherwise (a missing record included) it returns ErrSessionChanged.
	DeleteRev(ctx context.Context, clientID string, rev uint64) error
}

// Errors.
var (
	ErrHistoryGone = errors.New("broker: requested messages have left the history window")
	ErrNoSession   = errors.New("broker: no saved session")
	// ErrSessionChanged means a compare-and-set of a session record
	// lost: another writer changed the record since it was read.
	ErrSessionChanged = errors.New("broker: saved session changed meanwhile")
	ErrClosed         = errors.New("broker: closed")
)

// HealthChecker is implemented by brokers that can lose their backend.
// A node reports not-ready while Healthy returns an error, and keeps its
// local clients: the broker reconnects by itself.
type HealthChecker interface {
	Healthy() error
}

// ErrUnavailable means the broker cannot reach its backend right now
// (NATS is down or being reconnected to); the operation failed fast.
var ErrUnavailable = errors.New("broker: backend unavailable")

// Interest is implemented by brokers that can deliver to a node only the
// messages on channels its sessions subscribe to (interest-based
// delivery), so that a node's cost follows its own traffic rather than
// the fleet's. Sequence numbers stay the cluster-wide ones: a node simply
// does not see the messages nobody on it wants.
type Interest interface {
	// SubscribeInterest is Subscribe restricted to the channels matching
	// the patterns interest returns (Bayeux patterns, wildcards allowed).
	// The broker calls interest when the subscription starts and whenever
	// it switches to a new interest, from its own goroutine, never while
	// delivering; interest must not call the subscription back.
	SubscribeInterest(ctx context.Context, h func(Message), interest func() []string) (InterestSub, error)
}

// InterestSub is a subscription whose delivery follows a node's interest.
type InterestSub interface {
	// Want returns once delivery covers patterns, which interest must
	// return from now on: messages on them accepted after Want returned
	// are delivered. A caller that must not miss what was accepted
	// before (a replay) reads History after Want returned, up to at
	// least the last sequence at that time, and drops by sequence what
	// both give. Changes made while a switch is waiting are coalesced
	// into one switch (at most one per switch interval).
	Want(ctx context.Context, patterns []string) error
	// Changed tells the broker that interest returns less than before
	// (patterns nobody wants any more); the switch follows within the
	// switch interval and nothing waits for it.
	Changed()
	// Received counts the messages the subscription took from the
	// broker's backend, delivered or dropped: what the node paid for.
	Received() uint64
	// Stop ends the delivery; it must not be called from h.
	Stop()
}
