package rollout_test

import (
	"flag"
	"testing"

	"wsfleet/internal/nodetest"
)

// suite builds the wsfleet binary that the end-to-end tests run as the
// local cloud and its nodes, once per test binary.
var suite = &nodetest.Suite{Name: "rollout"}

// parallel is this package's -parallel when the command line gives none:
// its parallel tests are the end-to-end ones, which mostly wait (e2eMu
// and cloudSlots bound what runs beside what). The default, GOMAXPROCS
// (2 on CI's machine), would queue waiting tests behind each other.
//
// The in-memory crash-point tests (TestEngineCrashAtEveryEffect,
// TestPlacementCrashAtEveryEffect...) stay serial: they are CPU-bound,
// and run 8 at a time on a loaded machine, one point's http check of
// the harness's site (a real request with a 5 s timeout, in fake time)
// timed out and rolled its change back.
const parallel = "8"

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", parallel); err != nil {
			panic(err) // the testing package's own flag
		}
	}
	suite.Main(m)
}
