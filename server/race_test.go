//go:build race

package server

// raceOn: built with the race detector, whose sync.Pool drops some of
// what is put back, so that pooled buffers are allocated anew now and then.
const raceOn = true
