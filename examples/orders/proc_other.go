//go:build !linux

package main

import "os/exec"

// setParentDeath does nothing: only Linux kills a child when its parent
// dies.
func setParentDeath(*exec.Cmd) {}
