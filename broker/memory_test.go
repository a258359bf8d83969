package broker_test

import (
	"sync"
	"testing"

	"wsfleet/broker"
	"wsfleet/broker/brokertest"
)

func TestMemoryConformance(t *testing.T) {
	var mu sync.Mutex
	perTest := map[*testing.T]*broker.Memory{}
	brokertest.Run(t, func(t *testing.T, o brokertest.Options) broker.Broker {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := perTest[t]; ok {
			return b // a second "node" shares the process-local broker
		}
		b := broker.NewMemory(broker.MemoryOptions{HistoryMsgs: o.HistoryMsgs})
		perTest[t] = b
		t.Cleanup(func() { b.Close() })
		return b
	})
}
