package main

import (
	"os"

	"github.com/linkbatch/linkbatch/batch"
)

// sameFile reports whether the paths a and b name one file: the same device
// and inode when both exist (whatever the spelling, symbolic or hard link),
// else the same resolved path.
func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	switch {
	case errA == nil && errB == nil:
		return os.SameFile(sa, sb)
	case errA == nil || errB == nil:
		return false // one exists and the other does not
	}
	return batch.ResolvePath(a) == batch.ResolvePath(b)
}

// checkAliases refuses, with a usage error, a command line on which two of
// the files a run reads or writes (--in, --out, the sidecar, the lock file
// and --report) are one file, however each is spelled. A stream --out is
// left out: nothing is created beside it and it is never read back.
func checkAliases(c *config) error {
	type named struct{ what, path string }
	var files []named
	if c.In != "-" {
		files = append(files, named{"--in", c.In})
	}
	if !c.outStream {
		files = append(files,
			named{"--out", c.Out},
			named{"the run record of --out", batch.SidecarPath(c.Out)},
			named{"the lock file of --out", batch.LockPath(c.Out)})
	}
	if c.Report != "" {
		files = append(files, named{"--report", c.Report})
	}
	for i, a := range files {
		for _, b := range files[i+1:] {
			if sameFile(a.path, b.path) {
				return usagef("%s (%s) and %s (%s) name the same file", a.what, a.path, b.what, b.path)
			}
		}
	}
	return nil
}
