// Package examples carries the example files into the binary, so that
// `wsfleet demo` runs the seed's change from any directory, with nothing but
// the executable. The YAML files beside this one are the source of truth; this
// package only embeds them.
package examples

import _ "embed"

// SeedTopology is seed-topology.yaml: the seed's fleet (group gitter-ws,
// ws-01..ws-08 on ami-old, one target group, one load balancer).
//
//go:embed seed-topology.yaml
var SeedTopology []byte

// NewAMIPlan is gitter-ws-new-ami.yaml: the seed's change request as a
// rollout plan (canary ws-09, then ws-01..ws-04, then the rest).
//
//go:embed gitter-ws-new-ami.yaml
var NewAMIPlan []byte
