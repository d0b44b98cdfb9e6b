//go:build !linux

package main

import (
	"os/exec"
	"syscall"
)

// setChildAttrs puts the command in its own process group (lead signals
// the group). Unlike on Linux, a killed lead leaves it running.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
