package endpoint

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapobs "github.com/plgd-dev/go-coap/v3/net/observation"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// observation is one observation the server holds on a device.
//
// Notifications are routed by token in the server's own handler rather
// than through go-coap's per-connection observation registry, because
// that registry lives and dies with go-coap's connection object: it is
// gone after a server restart, after the idle connection is closed, and
// when the device's NAT mapping changes, while the device keeps notifying.
type observation struct {
	c     *client
	path  lwm2m.Path
	token string

	ready  chan struct{} // closed once the device answered the Observe (or it failed)
	failed bool          // written before ready is closed

	mu     sync.Mutex // guards the sequence state
	seq    uint32
	last   time.Time
	hasSeq bool
}

func newObservation(c *client, p lwm2m.Path, token string) *observation {
	return &observation{c: c, path: p, token: token, ready: make(chan struct{})}
}

// settle ends the pending state; called exactly once.
func (o *observation) settle(failed bool) {
	o.failed = failed
	close(o.ready)
}

// fresh reports whether a notification with Observe value seq is newer
// than the last one seen (RFC 7641 §3.4), and records it.
func (o *observation) fresh(seq uint32, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.freshLocked(seq, now)
}

func (o *observation) freshLocked(seq uint32, now time.Time) bool {
	if o.hasSeq && !coapobs.ValidSequenceNumber(o.seq, seq, o.last, now) {
		return false
	}
	o.seq, o.last, o.hasSeq = seq, now, true
	return true
}

// admit accepts a notification whose Observe value (when hasSeq) is newer
// than the last one and gives its event ev a place in the client's line.
// Both happen under o.mu, so that notifications racing each other (go-coap
// may serve a device's messages on two goroutines) reach the handler in
// the order of their sequence numbers.
func (s *Server) admit(o *observation, seq uint32, hasSeq bool, now time.Time, ev Event) (pendingEvent, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if hasSeq && !o.freshLocked(seq, now) {
		return pendingEvent{}, false
	}
	return s.queue(o.c, ev), true
}

// Observe starts observing p on the device and returns its current value.
// Later changes arrive as EventNotify. It is idempotent per (client, path):
// when p is already observed, it returns a fresh Read and the device keeps
// a single observation.
func (s *Server) Observe(ctx context.Context, clientID string, p lwm2m.Path) ([]lwm2m.Record, error) {
	for {
		c, _, err := s.current(clientID)
		if err != nil {
			return nil, opError(opObserve, p, err)
		}
		c.mu.Lock()
		if c.removed {
			c.mu.Unlock()
			return nil, opError(opObserve, p, lwm2m.ErrClientNotFound)
		}
		if err := s.loadObservationsLocked(ctx, c); err != nil {
			c.mu.Unlock()
			return nil, opError(opObserve, p, err)
		}
		o := c.obs[p]
		if o == nil {
			tok, err := newToken()
			if err != nil {
				c.mu.Unlock()
				return nil, opError(opObserve, p, err)
			}
			o = newObservation(c, p, tok)
			if c.obs == nil {
				c.obs = make(map[lwm2m.Path]*observation)
			}
			c.obs[p] = o
			s.mu.Lock()
			s.tokens[o.token] = o
			s.mu.Unlock()
			c.mu.Unlock()
			return s.establish(ctx, o)
		}
		c.mu.Unlock()
		select {
		case <-o.ready:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, opError(opObserve, p, lwm2m.ErrTimeout)
			}
			return nil, opError(opObserve, p, ctx.Err())
		}
		if o.failed {
			continue // the other caller's attempt failed; try ourselves
		}
		recs, err := s.Read(ctx, clientID, p)
		if err != nil {
			return nil, err
		}
		return recs, nil
	}
}

func newToken() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return string(b[:]), nil
}

// establish sends the Observe request of the pending observation o.
func (s *Server) establish(ctx context.Context, o *observation) ([]lwm2m.Record, error) {
	c, p := o.c, o.path
	fail := func(err error) ([]lwm2m.Record, error) {
		c.mu.Lock()
		if c.obs[p] == o {
			delete(c.obs, p)
		}
		s.mu.Lock()
		if s.tokens[o.token] == o {
			delete(s.tokens, o.token)
		}
		s.mu.Unlock()
		c.mu.Unlock()
		o.settle(true)
		return nil, err
	}
	st := c.state.Load()
	f := multiFormat(&st.reg)
	r, err := s.do(ctx, st, request{op: opObserve, code: codes.GET, path: p, accept: int(f), observe: 0, token: []byte(o.token)})
	if err != nil {
		return fail(err)
	}
	if !r.ok() {
		return fail(deviceError(opObserve, p, r))
	}
	recs, decErr := s.decode(&st.reg, p, r, f)
	if decErr != nil {
		decErr = opError(opObserve, p, decErr)
	}
	if !r.hasObserve {
		// The device answered like a Read: it does not observe p, so no
		// notification will come. Report the value, keep nothing.
		s.log.Warn("device did not accept the observation", "client", c.id, "path", p.String())
		_, _ = fail(nil)
		return recs, decErr
	}
	o.fresh(r.observe, time.Now())

	c.mu.Lock()
	if c.obs[p] == o && !c.removed {
		// Stored so that notifications are still routed after a restart.
		so := storage.Observation{ClientID: c.id, Path: p.String(), Token: []byte(o.token)}
		if err := s.store.PutObservation(ctx, so); err != nil {
			s.log.Warn("store observation", "client", c.id, "path", p.String(), "err", err)
		}
	}
	// Otherwise it was cancelled or the client re-registered meanwhile;
	// notifications for the token are no longer routed.
	c.mu.Unlock()
	o.settle(false)
	return recs, decErr
}

// CancelObserve cancels the observation of p actively (GET with Observe=1).
// The observation is forgotten locally even when the device does not
// answer. Cancelling a path that is not observed does nothing.
func (s *Server) CancelObserve(ctx context.Context, clientID string, p lwm2m.Path) error {
	c, st, err := s.current(clientID)
	if err != nil {
		return opError(opCancelObserve, p, err)
	}
	c.mu.Lock()
	if err := s.loadObservationsLocked(ctx, c); err != nil {
		c.mu.Unlock()
		return opError(opCancelObserve, p, err)
	}
	o := c.obs[p]
	if o == nil {
		c.mu.Unlock()
		return nil
	}
	delete(c.obs, p)
	s.mu.Lock()
	if s.tokens[o.token] == o {
		delete(s.tokens, o.token)
	}
	s.mu.Unlock()
	if err := s.store.DeleteObservation(ctx, c.id, p.String()); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Warn("delete observation", "client", c.id, "path", p.String(), "err", err)
	}
	c.mu.Unlock()

	f := multiFormat(&st.reg)
	r, err := s.do(ctx, st, request{op: opCancelObserve, code: codes.GET, path: p, accept: int(f), observe: 1, token: []byte(o.token)})
	if err != nil {
		return err
	}
	if !r.ok() {
		return deviceError(opCancelObserve, p, r)
	}
	return nil
}

// handleNotification routes a response-class message that go-coap did not
// match to a pending request: a notification of one of our observations.
// Its event has been handled when it returns. It leaves the response
// untouched, so go-coap acknowledges a confirmable notification with an
// empty ACK, unless it returns reset: the server is sure the token is not
// one of its observations, and the device is to be told so with a Reset
// (RFC 7641 §3.6, passive cancellation).
func (s *Server) handleNotification(t *transport, from net.Addr, r *pool.Message) (reset bool) {
	tok := r.Token()
	o, unknown := s.observationOf(t, from, tok)
	if o == nil {
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.Debug("notification with unknown token", "from", from.String(), "code", r.Code().String(), "reset", unknown)
		}
		return unknown
	}
	c := o.c
	st := c.state.Load()
	if st == nil || st.reg.Transport != t.name {
		// A token only counts in the security context of its registration:
		// to this peer it is unknown, and resetting this peer cannot end
		// the observation of the registration's own peer.
		return true
	}
	// Counted whatever becomes of its content (stale, undecodable): the
	// device sent it. A confirmable one gets go-coap's empty ACK, since
	// this handler sets no response.
	var ack int64
	if r.Type() == message.Confirmable {
		ack = emptyACKSize
	}
	c.account(ack, wireSize(r))
	now := time.Now()
	resp, err := readResponse(r)
	if err != nil {
		s.log.Warn("read notification", "client", c.id, "err", err)
		return false
	}
	if !resp.ok() {
		// An error notification ends the observation (RFC 7641 §3.2).
		s.log.Info("device ended observation", "client", c.id, "path", o.path.String(), "code", r.Code().String())
		s.forget(o)
		return false
	}
	recs, err := s.decode(&st.reg, o.path, resp, multiFormat(&st.reg))
	if err != nil {
		s.log.Warn("decode notification", "client", c.id, "path", o.path.String(), "err", err)
		return false
	}
	pe, ok := s.admit(o, resp.observe, resp.hasObserve, now,
		Event{Type: EventNotify, Registration: st.reg, Path: o.path, Records: recs, Time: now})
	if !ok {
		return false // reordered, older than what was delivered
	}
	s.deliver(pe)
	if !resp.hasObserve {
		// A notification without Observe is the last one.
		s.forget(o)
	}
	return false
}

// observationOf returns the observation with token tok, which a device at
// addr notified. Live observations are found by token alone (the device
// may have moved); stored ones, not loaded since a restart, among those of
// the client registered at addr. When it finds none, unknown says whether
// the server is sure the token is not one of its observations: not when
// loading failed, nor when the sender is no registered client while some
// client's stored observations are still unloaded (a device that moved
// since the restart).
func (s *Server) observationOf(t *transport, addr net.Addr, tok []byte) (o *observation, unknown bool) {
	s.mu.RLock()
	o = s.tokens[string(tok)]
	var c *client
	ua, isUDP := addr.(*net.UDPAddr)
	if o == nil && isUDP {
		c = s.byAddr[addrKey(t, ua)]
	}
	s.mu.RUnlock()
	if o != nil {
		return o, false
	}
	if c == nil {
		return nil, isUDP && s.unloaded.Load() == 0
	}
	c.mu.Lock()
	var err error
	if !c.removed {
		err = s.loadObservationsLocked(context.Background(), c)
	}
	c.mu.Unlock()
	if err != nil {
		s.log.Warn("load observations", "client", c.id, "err", err)
		return nil, false
	}
	s.mu.RLock()
	o = s.tokens[string(tok)]
	s.mu.RUnlock()
	return o, o == nil
}

// forget drops o locally and from the store (the device ended it).
func (s *Server) forget(o *observation) {
	c := o.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.obs[o.path] != o {
		return
	}
	delete(c.obs, o.path)
	s.mu.Lock()
	if s.tokens[o.token] == o {
		delete(s.tokens, o.token)
	}
	s.mu.Unlock()
	if err := s.store.DeleteObservation(context.Background(), c.id, o.path.String()); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Warn("delete observation", "client", c.id, "path", o.path.String(), "err", err)
	}
}
