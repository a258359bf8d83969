package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…"; left at
// "dev", the module version Go stamped into the binary is printed.
var version = "dev"

func init() {
	register("version", "print the version: the module's, the commit the binary was built from and whether the tree had uncommitted changes, the commit's time, the Go release",
		"wsfleet version\nwsfleet --version",
		func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			if err := parseFlags(newFlagSet("version", stderr), args); err != nil {
				return err
			}
			readBuild(debug.ReadBuildInfo).write(stdout)
			return nil
		})
}

// buildInfo is what `wsfleet version` says about the binary.
type buildInfo struct {
	version  string // -X main.version, else the module version, else "dev"
	commit   string // vcs.revision; empty when built without VCS stamping
	time     string // vcs.time: the commit's time (Go records no build time)
	modified bool   // vcs.modified: built from a tree with uncommitted changes
	goVer    string
	platform string
}

// readBuild collects the build info from read (debug.ReadBuildInfo outside
// tests).
func readBuild(read func() (*debug.BuildInfo, bool)) buildInfo {
	b := buildInfo{version: version}
	bi, ok := read()
	if !ok {
		return b
	}
	if b.version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.version = bi.Main.Version
	}
	b.goVer = bi.GoVersion
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.commit = s.Value
		case "vcs.time":
			b.time = s.Value
		case "vcs.modified":
			b.modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" {
		b.platform = goos + "/" + goarch
	}
	return b
}

func (b buildInfo) write(w io.Writer) {
	fmt.Fprintf(w, "wsfleet %s\n", b.version)
	switch {
	case b.commit == "":
		fmt.Fprintln(w, "commit: unknown (built outside a git checkout, or with -buildvcs=false)")
	case b.modified:
		fmt.Fprintf(w, "commit: %s, dirty (built with uncommitted changes)\n", b.commit)
	default:
		fmt.Fprintf(w, "commit: %s\n", b.commit)
	}
	if b.time != "" {
		fmt.Fprintf(w, "commit time: %s\n", b.time)
	}
	if b.goVer != "" {
		fmt.Fprintf(w, "go: %s %s\n", b.goVer, b.platform)
	}
}
