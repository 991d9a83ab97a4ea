package main

import (
	"fmt"
	"runtime/debug"
)

// versionString describes the build: module version and, when the binary
// was built from a checkout, the commit.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "linkbatch (unknown version)"
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if rev != "" {
		return fmt.Sprintf("linkbatch %s commit %s%s %s", version, rev, modified, bi.GoVersion)
	}
	return fmt.Sprintf("linkbatch %s %s", version, bi.GoVersion)
}
