//go:build !linux

package bench

import "errors"

// steerReceive is Linux's loopback receive packet steering; elsewhere the
// steered figures are not measured.
func steerReceive(serverCPU, cpus int) (restore func() error, err error) {
	return nil, errors.New("receive steering: Linux only")
}
