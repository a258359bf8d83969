package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Supported nats-server versions. The broker needs JetStream's consumer
// create API with a name and a filter subject (2.9.0); a consumer with
// several filter subjects, which History uses for a session subscribed to
// several channels, came with 2.10.0. On a 2.9 server History reads one
// consumer per filter subject and merges them by sequence instead, so
// every replay still happens (docs/broker.md "Supported NATS versions").
const (
	// MinNATSServer is the oldest nats-server the broker works with; a
	// node refuses to start on an older one.
	MinNATSServer = "2.9.0"
	// multiFilterNATSServer is the first nats-server whose consumers take
	// several filter subjects.
	multiFilterNATSServer = "2.10.0"
)

// ErrNATSTooOld means the NATS server is older than MinNATSServer or has
// no JetStream: the node cannot run on it.
var ErrNATSTooOld = errors.New("broker: unsupported nats-server")

// serverVersion is a nats-server release number (major.minor.patch).
type serverVersion [3]int

// parseServerVersion reads "2.10.3", "v2.11.0-beta.1" or "2.9.10"; a
// pre-release suffix is ignored (a 2.10.0-RC has 2.10's features).
func parseServerVersion(s string) (serverVersion, error) {
	var v serverVersion
	core := strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(core, "-+"); i >= 0 {
		core = core[:i]
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("nats-server version %q: want major.minor.patch", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, fmt.Errorf("nats-server version %q: %q is not a number", s, p)
		}
		v[i] = n
	}
	return v, nil
}

func (v serverVersion) atLeast(w serverVersion) bool {
	for i := range v {
		if v[i] != w[i] {
			return v[i] > w[i]
		}
	}
	return true
}

func (v serverVersion) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

func mustVersion(s string) serverVersion {
	v, err := parseServerVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

var (
	minVersion         = mustVersion(MinNATSServer)
	multiFilterVersion = mustVersion(multiFilterNATSServer)
)

// serverFeatures is what the broker adapts to on the server it is
// connected to.
type serverFeatures struct {
	version     serverVersion
	apiLevel    int  // JetStream API level (0 before nats-server 2.11)
	multiFilter bool // consumers take several filter subjects
}

// checkServer reads the connected server's version and JetStream account
// and returns its features, or an error wrapping ErrNATSTooOld that names
// the version the broker needs.
func (b *NATS) checkServer(ctx context.Context) (serverFeatures, error) {
	v, err := checkVersion(b.nc.ConnectedServerVersion(), b.nc.ConnectedUrlRedacted())
	if err != nil {
		return serverFeatures{}, err
	}
	var info *jetstream.AccountInfo
	err = b.retry(ctx, 3*time.Second, func(ctx context.Context) error {
		var err error
		info, err = b.js.AccountInfo(ctx)
		return err
	})
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return serverFeatures{}, fmt.Errorf("%w: %s has no JetStream; run nats-server with -js (or jetstream {} in its config): %w",
			ErrNATSTooOld, b.nc.ConnectedUrlRedacted(), err)
	}
	if err != nil {
		return serverFeatures{}, fmt.Errorf("jetstream account info: %w", err)
	}
	return serverFeatures{version: v, apiLevel: info.API.Level, multiFilter: v.atLeast(multiFilterVersion)}, nil
}

// checkVersion applies the version rule to the version a server at url
// announced: an error wrapping ErrNATSTooOld, naming MinNATSServer, when
// it is older or unreadable.
func checkVersion(raw, url string) (serverVersion, error) {
	v, err := parseServerVersion(raw)
	if err != nil {
		return v, fmt.Errorf("%w: %s: %w; wsfleet needs nats-server %s or newer", ErrNATSTooOld, url, err, MinNATSServer)
	}
	if !v.atLeast(minVersion) {
		return v, fmt.Errorf("%w: %s runs nats-server %s; wsfleet needs nats-server %s or newer",
			ErrNATSTooOld, url, v, MinNATSServer)
	}
	return v, nil
}
