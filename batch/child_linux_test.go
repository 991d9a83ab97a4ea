//go:build linux

package batch

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the process cmd starts receive SIGKILL when the
// process that started it exits, however it exits (a benchmark killed, or
// ended by -timeout, leaves no linkbatch running). Linux sends it when the
// thread that started the child exits; the Go runtime keeps its threads
// while no goroutine locked to one returns, which the tests never do.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
