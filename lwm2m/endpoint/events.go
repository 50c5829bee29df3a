package endpoint

import "sync"

// Event delivery.
//
// An event is delivered by the goroutine that caused it: the CoAP handler
// serving the device's message (go-coap sends the answer when that handler
// returns, so the event handler has returned before the device hears back),
// or the expiry loop. There is no queue between the two, hence nothing to
// lose when the process dies, and the events of different devices are
// handled in parallel, which lets the handler's store writes be committed
// together.
//
// Each client keeps its own events in order with a ticket line: a change
// takes the next ticket while it holds the client's lock, so tickets follow
// the order of the changes, and delivers once that lock is released, after
// the events of the earlier tickets. Holding no lock while the handler runs
// is what lets the handler call back into the Server (Observe, Read,
// SetDeviceInfo take the client's lock) from its own goroutines while the
// device's handler waits.

// eventOrder is a client's ticket line. Uncontended (one event at a time,
// the usual case) it costs a mutex and no allocation.
type eventOrder struct {
	mu      sync.Mutex
	next    uint64                   // the ticket take hands out next
	turn    uint64                   // the ticket whose event may be delivered now
	waiting map[uint64]chan struct{} // tickets waiting for their turn; closed when it comes
}

// take returns the next ticket. The caller must pass it to wait and then
// done, whatever happens, or the client's later events wait forever.
func (q *eventOrder) take() uint64 {
	q.mu.Lock()
	t := q.next
	q.next++
	q.mu.Unlock()
	return t
}

// wait returns when it is ticket t's turn.
func (q *eventOrder) wait(t uint64) {
	q.mu.Lock()
	if q.turn == t {
		q.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	if q.waiting == nil {
		q.waiting = make(map[uint64]chan struct{})
	}
	q.waiting[t] = ch
	q.mu.Unlock()
	<-ch
}

// done ends ticket t's turn and wakes the next ticket if it is waiting.
func (q *eventOrder) done(t uint64) {
	q.mu.Lock()
	q.turn = t + 1
	if ch, ok := q.waiting[q.turn]; ok {
		delete(q.waiting, q.turn)
		close(ch)
	}
	q.mu.Unlock()
}

// pendingEvent is an event that has its place in its client's line and
// waits to be delivered. The zero value is no event.
type pendingEvent struct {
	c      *client // nil: the event needs no place in a line
	ticket uint64
	ev     Event
}

// queue gives ev its place in c's line. c.mu is held (or, for a
// notification, the observation's lock that orders notifications); the
// caller passes the result to deliver once it has released its locks.
func (s *Server) queue(c *client, ev Event) pendingEvent {
	if s.onEvent == nil {
		return pendingEvent{}
	}
	return pendingEvent{c: c, ticket: c.events.take(), ev: ev}
}

// deliver hands pe's event to the handler once the client's earlier events
// have been handled. The caller holds no lock of the Server.
func (s *Server) deliver(pe pendingEvent) {
	if pe.ev.Type == 0 || s.onEvent == nil {
		return
	}
	if pe.c == nil {
		s.onEvent(s.evCtx, pe.ev)
		return
	}
	pe.c.events.wait(pe.ticket)
	// Deferred so that a panicking handler (recovered by the CoAP
	// handler) still lets the client's next events through.
	defer pe.c.events.done(pe.ticket)
	s.onEvent(s.evCtx, pe.ev)
}
