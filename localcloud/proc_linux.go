package localcloud

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes an instance's process die with the cloud: a crashed
// or killed `wsfleet cloud` must not leave orphan nodes holding ports.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
