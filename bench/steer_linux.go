//go:build linux

package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// loRPS is the loopback device's receive packet steering mask (a
// variable for the tests, which point it at a file of their own).
var loRPS = "/sys/class/net/lo/queues/rx-0/rps_cpus"

// steerReceive moves the receiving half of loopback TCP off the servers'
// core for a while: it sets the loopback device's receive packet steering
// (RPS) to every core but serverCPU and returns what puts the old mask
// back.
//
// Why: on loopback the kernel runs the receiving end of every segment
// (the peer's TCP input, its socket queue, waking its reader) in the
// sender's context, so a server's CPU per delivery includes the client's
// receive, a cost no server pays on a network, where the client's machine
// does it and the server's own input runs in its NIC's softirq. The same
// few microseconds are added to every server alike; a ratio of two
// servers' figures then says more about loopback than about them (the
// bare writer, one write a delivery and nothing else, measures 0.55–0.73x
// Centrifugo here with it, 0.51–0.57x without). Steered, that work runs
// on the other core as softirq; what stays on the server's core is its
// own code, its send path and the interrupt it raises to hand a packet
// over, as a network driver's doorbell would.
//
// It needs root (the bench reports it unavailable otherwise) and changes
// the machine for everyone while it is set, so it is set only around a
// measuring step.
func steerReceive(serverCPU, cpus int) (restore func() error, err error) {
	if serverCPU < 0 || cpus < 2 || cpus > 64 {
		return nil, fmt.Errorf("receive steering needs the servers pinned to one of 2 to 64 cores (server core %d, %d cores)", serverCPU, cpus)
	}
	old, err := os.ReadFile(loRPS)
	if err != nil {
		return nil, fmt.Errorf("receive steering: %w", err)
	}
	var mask uint64
	for c := range cpus {
		if c != serverCPU {
			mask |= 1 << c
		}
	}
	if err := os.WriteFile(loRPS, []byte(strconv.FormatUint(mask, 16)), 0); err != nil {
		return nil, fmt.Errorf("receive steering: set %s: %w", loRPS, err)
	}
	prev := strings.TrimSpace(string(old))
	return func() error {
		if err := os.WriteFile(loRPS, []byte(prev), 0); err != nil {
			return fmt.Errorf("receive steering: put %s back to %s: %w", loRPS, prev, err)
		}
		return nil
	}, nil
}
