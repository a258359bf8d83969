package client

// seqWindow remembers which broker sequence numbers a client has been given,
// to drop duplicates (a replay overlapping live delivery, a message
// redelivered after a session restore) without keeping every number ever
// seen. It holds the highest number seen and a bitmap of the windowSize
// numbers below it; anything older is treated as already seen.
type seqWindow struct {
	high uint64
	bits [windowSize / 64]uint64
}

const windowSize = 8192

// verdict is what seqWindow.add decided about one number.
type verdict int

const (
	seqNew       verdict = iota // above everything seen: deliver
	seqLate                     // below the highest but never seen: deliver, out of order
	seqDuplicate                // seen before, or too old to tell: drop
)

// add records seq and classifies it.
func (w *seqWindow) add(seq uint64) verdict {
	switch {
	case seq > w.high:
		// Clear the bits of the numbers the window slides past.
		if seq-w.high >= windowSize {
			w.bits = [windowSize / 64]uint64{}
		} else {
			for s := w.high + 1; s < seq; s++ {
				w.clear(s)
			}
		}
		w.high = seq
		w.set(seq)
		return seqNew
	case w.high-seq >= windowSize:
		return seqDuplicate
	case w.isSet(seq):
		return seqDuplicate
	default:
		w.set(seq)
		return seqLate
	}
}

func (w *seqWindow) set(s uint64)        { w.bits[(s%windowSize)/64] |= 1 << (s % 64) }
func (w *seqWindow) clear(s uint64)      { w.bits[(s%windowSize)/64] &^= 1 << (s % 64) }
func (w *seqWindow) isSet(s uint64) bool { return w.bits[(s%windowSize)/64]&(1<<(s%64)) != 0 }
