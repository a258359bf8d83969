package probe_test

// extraPeers lists the servers besides Faye that the end-to-end tests run
// against; wsfleet serve joins when it lands.
func extraPeers() []peer { return nil }
