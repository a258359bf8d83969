//go:build !unix

package server

// canWriteRaw: no non-blocking writes here; every frame goes through a
// writer goroutine.
const canWriteRaw = false

func (fb *frameBuf) writeFD(uintptr) bool { return true }
