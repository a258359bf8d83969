// Package abuse holds the soak tests that run a ws node as a separate
// process (internal/nodetest) and treat it as a hostile client would,
// measuring what the node does from outside: its resident memory.
package abuse
