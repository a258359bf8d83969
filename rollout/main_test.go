package rollout_test

import (
	"testing"

	"wsfleet/internal/nodetest"
)

// suite builds the wsfleet binary that the end-to-end tests run as the
// local cloud and its nodes, once per test binary.
var suite = &nodetest.Suite{Name: "rollout"}

func TestMain(m *testing.M) { suite.Main(m) }
