package endpoint

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options/config"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

type responseWriter = responsewriter.ResponseWriter[*udpclient.Conn]

// handler returns the CoAP handler of a listener. It serves the
// registration interface and routes notifications; anything else is 4.04.
func (s *Server) handler(t *transport) func(w *responseWriter, r *pool.Message) {
	return func(w *responseWriter, r *pool.Message) {
		s.gate.RLock()
		defer s.gate.RUnlock()
		if s.closed {
			return
		}
		defer func() {
			// Device input must never take the server down.
			if v := recover(); v != nil {
				s.log.Error("panic in CoAP handler", "panic", v, "stack", string(debug.Stack()))
				_ = w.SetResponse(codes.InternalServerError, message.TextPlain, nil)
			}
		}()
		code := r.Code()
		switch {
		case code == codes.Empty:
			return
		case code >= codes.Created:
			// Response class, not matched to a pending request by go-coap.
			if s.handleNotification(t, w.Conn().RemoteAddr(), r) {
				markReset(w, r)
			}
			return
		}
		var segs [3][]byte
		n := 0
		for _, o := range r.Options() {
			if o.ID != message.URIPath {
				continue
			}
			if n == len(segs) {
				n++
				break
			}
			segs[n] = o.Value
			n++
		}
		if n == 0 || n > 2 || string(segs[0]) != "rd" {
			s.reply(w, codes.NotFound, "")
			return
		}
		var c *client // the registration the request was for, once accepted
		switch {
		case n == 1 && code == codes.POST:
			c = s.serveRegister(t, w, r)
		case n == 2 && code == codes.POST:
			c = s.serveUpdate(t, w, r, string(segs[1]))
		case n == 2 && code == codes.DELETE:
			c = s.serveDeregister(t, w, r, string(segs[1]))
		default:
			s.reply(w, codes.MethodNotAllowed, "")
		}
		if c != nil {
			// Counted before go-coap sends the response, so a device that
			// has its answer sees the exchange in the counters.
			c.account(responseSize(r, w), wireSize(r))
		}
	}
}

// resetMark marks, in the context of a response, that the message it
// answers is to be rejected with a Reset (see processReceived).
type resetMark struct{}

// markReset asks processReceived to answer r with a Reset. Only
// confirmable and non-confirmable messages can be rejected; an ACK that
// arrives too late for its request is dropped silently (RFC 7252 §4.2).
//
// The response is also made a Reset-type empty message, so that go-coap
// takes its ping/reset path: that path does not cache the answer for
// deduplication, which would otherwise answer the device's retransmission
// of a confirmable message with an ACK.
func markReset(w *responseWriter, r *pool.Message) {
	if typ := r.Type(); typ != message.Confirmable && typ != message.NonConfirmable {
		return
	}
	m := w.Message()
	m.SetContext(context.WithValue(m.Context(), resetMark{}, true))
	m.SetType(message.Reset)
	m.SetCode(codes.Empty)
}

// processReceived is go-coap's per-message processing with one addition:
// a response-class message the handler marked (markReset) is answered with
// a Reset carrying its message ID (RFC 7252 §4.2/§4.3).
//
// go-coap cannot send that by itself: after the handler it turns any
// answer to a confirmable message into an ACK, and gives the Reset to a
// non-confirmable one a fresh message ID. So the answer is rewritten here,
// after go-coap's handling and before go-coap writes it, which keeps its
// write path (the wildcard listener's source address, the connection).
func (s *Server) processReceived(req *pool.Message, cc *udpclient.Conn, handler config.HandlerFunc[*udpclient.Conn]) {
	if typ := req.Type(); req.Code() < codes.Created || (typ != message.Confirmable && typ != message.NonConfirmable) {
		cc.ProcessReceivedMessageWithHandler(req, handler)
		return
	}
	mid := req.MessageID()
	cc.ProcessReceivedMessageWithHandler(req, func(w *responseWriter, r *pool.Message) {
		handler(w, r)
		m := w.Message()
		if m.Context().Value(resetMark{}) == nil {
			return
		}
		m.ResetOptionsTo(nil)
		m.SetBody(nil)
		m.SetToken(nil)
		m.SetCode(codes.Empty)
		m.SetType(message.Reset)
		m.SetMessageID(mid)
	})
}

// reply sets the response, with a text diagnostic when msg is not empty.
func (s *Server) reply(w *responseWriter, code codes.Code, msg string, opts ...message.Option) {
	var body *strings.Reader
	if msg != "" {
		body = strings.NewReader(msg)
	}
	var err error
	if body != nil {
		err = w.SetResponse(code, message.TextPlain, body, opts...)
	} else {
		err = w.SetResponse(code, message.TextPlain, nil, opts...)
	}
	if err != nil {
		s.log.Debug("set response", "err", err)
	}
}

func queries(r *pool.Message) []string {
	q := make([]string, 0, 8)
	for _, o := range r.Options() {
		if o.ID == message.URIQuery {
			q = append(q, string(o.Value))
		}
	}
	return q
}

// peerOf says where a request came from. For a wildcard listener it also
// keeps the local address the device sent to: go-coap keys connections by
// (remote, local) address, and a request to the device must use the same
// connection its answer will be matched on.
func peerOf(t *transport, w *responseWriter, r *pool.Message) (peer, error) {
	ra, ok := w.Conn().RemoteAddr().(*net.UDPAddr)
	if !ok || ra == nil {
		return peer{}, errors.New("unexpected remote address")
	}
	p := peer{t: t, addr: ra}
	la, ok := w.Conn().LocalAddr().(*net.UDPAddr)
	if ok && la != nil && (len(la.IP) == 0 || la.IP.IsUnspecified()) {
		if cm := r.ControlMessage(); cm != nil && len(cm.Dst) > 0 && !cm.Dst.IsMulticast() {
			l := *la
			l.IP = append(net.IP(nil), cm.Dst...)
			p.laddr = &l
		}
	}
	return p, nil
}

// serveRegister answers a Register; it returns the client when registered.
func (s *Server) serveRegister(t *transport, w *responseWriter, r *pool.Message) *client {
	payload, err := readBody(r)
	if err != nil {
		s.reply(w, codes.BadRequest, "cannot read payload")
		return nil
	}
	p, err := parseRegister(queries(r), payload)
	if err != nil {
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.Debug("bad register", "from", w.Conn().RemoteAddr().String(), "err", err)
		}
		s.reply(w, codes.BadRequest, err.Error())
		return nil
	}
	org, err := t.organisation(w.Conn())
	if err != nil {
		s.log.Info("register rejected", "endpoint", p.Endpoint, "err", err)
		s.reply(w, codes.Forbidden, "")
		return nil
	}
	pr, err := peerOf(t, w, r)
	if err != nil {
		s.reply(w, codes.BadRequest, err.Error())
		return nil
	}
	c, reg, err := s.register(r.Context(), org, p, pr)
	if err != nil {
		s.log.Error("register", "endpoint", p.Endpoint, "err", err)
		s.reply(w, codes.InternalServerError, "")
		return nil
	}
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.Debug("registered", "id", reg.ID, "endpoint", reg.Endpoint, "addr", reg.Address)
	}
	s.reply(w, codes.Created, "",
		message.Option{ID: message.LocationPath, Value: []byte("rd")},
		message.Option{ID: message.LocationPath, Value: []byte(reg.ID)})
	return c
}

// serveUpdate answers an Update; it returns the client when updated.
func (s *Server) serveUpdate(t *transport, w *responseWriter, r *pool.Message, id string) *client {
	payload, err := readBody(r)
	if err != nil {
		s.reply(w, codes.BadRequest, "cannot read payload")
		return nil
	}
	p, err := parseUpdate(queries(r), payload)
	if err != nil {
		s.reply(w, codes.BadRequest, err.Error())
		return nil
	}
	org, err := t.organisation(w.Conn())
	if err != nil {
		s.reply(w, codes.Forbidden, "")
		return nil
	}
	pr, err := peerOf(t, w, r)
	if err != nil {
		s.reply(w, codes.BadRequest, err.Error())
		return nil
	}
	// Looked up first: the update may race with a removal, and the
	// exchange still belongs to the registration it was made with.
	c := s.lookup(id)
	if _, err := s.update(r.Context(), org, id, p, pr); err != nil {
		if errors.Is(err, errNotRegistered) {
			s.reply(w, codes.NotFound, "")
			return nil
		}
		s.log.Error("update", "id", id, "err", err)
		s.reply(w, codes.InternalServerError, "")
		return nil
	}
	s.reply(w, codes.Changed, "")
	return c
}

// serveDeregister answers a De-register; it returns the client when
// de-registered.
func (s *Server) serveDeregister(t *transport, w *responseWriter, r *pool.Message, id string) *client {
	org, err := t.organisation(w.Conn())
	if err != nil {
		s.reply(w, codes.Forbidden, "")
		return nil
	}
	// Looked up first: a successful De-register removes it from the index.
	c := s.lookup(id)
	if _, err := s.deregister(r.Context(), org, id, t); err != nil {
		if errors.Is(err, errNotRegistered) {
			s.reply(w, codes.NotFound, "")
			return nil
		}
		s.log.Error("deregister", "id", id, "err", err)
		s.reply(w, codes.InternalServerError, "")
		return nil
	}
	s.reply(w, codes.Deleted, "")
	return c
}
