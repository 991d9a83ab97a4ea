//go:build !linux

package batch

import "os/exec"

// dieWithParent does nothing where the system cannot tie a child's life to
// its parent's; the benchmarks still stop their children when they end
// normally (see runProcesses).
func dieWithParent(*exec.Cmd) {}
