//go:build linux

package batch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// childRoleEnv tells this test binary, run again by
// TestChildDiesWithParent, which part to play.
const childRoleEnv = "LINKBATCH_TEST_CHILD_ROLE"

// TestChildDiesWithParent: a process started with dieWithParent by a
// parent that is then killed (as a benchmark killed or timed out) does not
// outlive it. The parent and the child are this test binary run again.
func TestChildDiesWithParent(t *testing.T) {
	switch os.Getenv(childRoleEnv) {
	case "parent":
		child := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithParent$")
		child.Env = append(os.Environ(), childRoleEnv+"=child")
		dieWithParent(child)
		if err := child.Start(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(child.Process.Pid)
		time.Sleep(time.Minute)
		os.Exit(0)
	case "child":
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	parent := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithParent$")
	parent.Env = append(os.Environ(), childRoleEnv+"=parent")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("read the child's pid: %v", err)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace([]byte(line))))
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("the parent said %q, not a pid", line)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("child %d still runs 5s after its parent was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether process pid runs: it exists and is not a zombie
// (an orphan may wait for a reaper that never comes in a container).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
