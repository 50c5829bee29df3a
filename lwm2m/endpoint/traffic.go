package endpoint

import (
	"errors"
	"sync/atomic"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// Traffic accounting.
//
// Every CoAP message the endpoint handles for a registration is counted
// with its encoded size, which for CoAP over UDP is exactly the UDP
// payload (IP and UDP headers are not counted). Counting happens where
// the endpoint sees whole messages, not on the socket, because go-coap
// owns the socket; the consequences, all of which make the counters a
// lower bound of what went over the wire:
//   - retransmissions (ours and the device's) and duplicates that go-coap
//     answers from its cache are not counted: each message counts once;
//   - a blockwise transfer counts as one message of the reassembled size;
//   - the empty ACK a device sends before a separate response is consumed
//     by go-coap and not counted (the empty ACKs we send are);
//   - messages that belong to no registration (a rejected Register, an
//     Update for an unknown ID, a notification with an unknown token)
//     are not counted anywhere.
//
// Counters live in memory and start from zero when the server starts.
// A client's counters live as long as its registration ID: they survive
// a re-register of the same endpoint and end with de-registration or
// expiry, while its organisation's totals keep everything.

// emptyACKSize is the size of an empty ACK: the 4-byte CoAP header alone.
const emptyACKSize = 4

// counters are one set of traffic counters, updated without locks.
type counters struct {
	sent, received, transactions atomic.Int64
}

// add records one exchange of sent and received bytes.
func (t *counters) add(sent, received int64) {
	t.sent.Add(sent)
	t.received.Add(received)
	t.transactions.Add(1)
}

func (t *counters) snapshot() lwm2m.Traffic {
	return lwm2m.Traffic{BytesSent: t.sent.Load(), BytesReceived: t.received.Load(), TransactionCount: t.transactions.Load()}
}

// account records one exchange for c and its organisation.
func (c *client) account(sent, received int64) {
	c.traffic.add(sent, received)
	c.orgTraffic.add(sent, received)
}

// countExchange records a completed downlink exchange with the device of
// st. A registration removed meanwhile still counts for its organisation.
func (s *Server) countExchange(st *clientState, sent, received int64) {
	if c := s.lookup(st.reg.ID); c != nil {
		c.account(sent, received)
		return
	}
	s.orgCounters(st.reg.Organisation).add(sent, received)
}

// countSent records a downlink request that got no answer: its bytes, but
// no transaction, since no exchange completed.
func (s *Server) countSent(st *clientState, sent int64) {
	if c := s.lookup(st.reg.ID); c != nil {
		c.traffic.sent.Add(sent)
		c.orgTraffic.sent.Add(sent)
		return
	}
	s.orgCounters(st.reg.Organisation).sent.Add(sent)
}

// orgCounters returns the counters of org, creating them on first use.
func (s *Server) orgCounters(org string) *counters {
	s.orgMu.Lock()
	defer s.orgMu.Unlock()
	t := s.orgTraffic[org]
	if t == nil {
		t = new(counters)
		s.orgTraffic[org] = t
	}
	return t
}

// ClientTraffic returns the traffic with the device of a registration
// since the server started; zero for unknown registrations.
func (s *Server) ClientTraffic(clientID string) lwm2m.Traffic {
	c := s.lookup(clientID)
	if c == nil {
		return lwm2m.Traffic{}
	}
	return c.traffic.snapshot()
}

// OrganisationTraffic returns the traffic with all devices of an
// organisation since the server started, including devices no longer
// registered.
func (s *Server) OrganisationTraffic(org string) lwm2m.Traffic {
	s.orgMu.Lock()
	t := s.orgTraffic[org]
	s.orgMu.Unlock()
	if t == nil {
		return lwm2m.Traffic{}
	}
	return t.snapshot()
}

// wireSize is the encoded size of m as CoAP over UDP (RFC 7252 §3): the
// 4-byte header, the token, the options and, when there is a payload, the
// 0xFF marker and the payload. Type and message ID do not change it, so
// it can be taken before go-coap fills them in.
func wireSize(m *pool.Message) int64 {
	n := int64(4 + len(m.Token()))
	opts, err := m.Options().Marshal(nil) // a nil buffer yields the length
	if err == nil || errors.Is(err, message.ErrTooSmall) {
		n += int64(opts)
	}
	if body, err := m.BodySize(); err == nil && body > 0 {
		n += 1 + body
	}
	return n
}

// responseSize is what go-coap sends for the response w holds to request
// r once the handler returns: the response when one was set, an empty
// ACK for a confirmable request without one, nothing otherwise.
func responseSize(r *pool.Message, w *responseWriter) int64 {
	switch {
	case w.Message().IsModified():
		return wireSize(w.Message())
	case r.Type() == message.Confirmable:
		return emptyACKSize
	}
	return 0
}
