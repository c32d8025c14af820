package main

import (
	"os/exec"
	"syscall"
)

// setParentDeath makes the kernel kill cmd's process when this one dies.
func setParentDeath(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
