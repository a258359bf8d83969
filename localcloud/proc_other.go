//go:build !linux

package localcloud

import "os/exec"

// setProcAttr has nothing to set where the parent-death signal is missing.
func setProcAttr(cmd *exec.Cmd) {}
