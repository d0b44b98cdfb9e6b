package main

import (
	"os/exec"
	"syscall"
)

// setChildAttrs puts the command in its own process group (lead signals
// the group) and has the kernel kill it if lead dies, so that a killed
// lead never leaves a command running without leadership.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
