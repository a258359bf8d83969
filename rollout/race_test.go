//go:build race

package rollout

// raceEnabled: under the race detector the crash property test samples
// its crash points, since each run costs several times more.
const raceEnabled = true
