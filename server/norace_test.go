//go:build !race

package server

// raceOn: built with the race detector (see race_test.go).
const raceOn = false
