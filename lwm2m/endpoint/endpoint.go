// Package endpoint is the CoAP side of the LwM2M server: it serves the
// registration interface (Register, Update, De-register) to devices, keeps
// the registrations (in memory, backed by the store) and their lifetimes,
// and sends device-management and observation requests to devices from the
// server's own listening socket.
//
// The CoAP handler and the downlink code are transport-neutral: a listener
// is described by a transport value (name, organisation of a peer, how to
// reach a peer), so that a DTLS listener can share them.
package endpoint

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpserver "github.com/plgd-dev/go-coap/v3/udp/server"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// Config configures a Server.
type Config struct {
	Addr                string        // UDP listen address, e.g. ":5683" or "127.0.0.1:0"
	DefaultOrganisation string        // organisation NoSec devices belong to
	RequestTimeout      time.Duration // per downlink request; default 5s
	ExpiryCheckInterval time.Duration // how often lifetimes are checked; default 1s
	Logger              *slog.Logger
}

// Models gives the object model of an organisation; *model.Registry satisfies it.
type Models interface {
	Resolver(org string) lwm2m.Resolver
}

// EventType says what happened to a registration.
type EventType int

// The events a Server reports.
const (
	EventRegistered EventType = iota + 1
	EventUpdated
	EventDeregistered
	EventExpired
	EventNotify
)

// String returns the event type's name.
func (t EventType) String() string {
	switch t {
	case EventRegistered:
		return "registered"
	case EventUpdated:
		return "updated"
	case EventDeregistered:
		return "deregistered"
	case EventExpired:
		return "expired"
	case EventNotify:
		return "notify"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is a registration change or an observation notification.
type Event struct {
	Type         EventType
	Registration lwm2m.Registration // the current one; for Deregistered/Expired the last one
	Path         lwm2m.Path         // EventNotify: the observed path
	Records      []lwm2m.Record     // EventNotify: decoded values
	Time         time.Time
}

// EventHandler receives events. Its contract (events.go has the machinery):
//
//   - It has returned for an event before the device is answered: the CoAP
//     response to the Register, Update or De-register, or the ACK of the
//     confirmable notification, that caused the event is sent only then.
//     What the handler has made durable (a stored notification) is durable
//     before the device learns that the server has its message, so a
//     server killed right after the answer loses nothing.
//   - Events of one registration (one client ID) reach it one at a time,
//     in the order they happened, expiry included; events of different
//     registrations reach it concurrently, from the goroutines that serve
//     those devices, so it must be safe for concurrent use.
//   - It is called with no lock of the Server held, so it may call the
//     Server's methods, but it must not block for long: the device, and
//     every later event of the same registration, wait for it. In
//     particular it must not make a synchronous request (Read, Observe,
//     WriteAttributes, ...) to the device the event is about from inside
//     the call, since the device is still waiting for its answer and its
//     later messages queue behind this one; do such requests from a
//     goroutine of your own.
type EventHandler func(ctx context.Context, ev Event)

const (
	defaultRequestTimeout = 5 * time.Second
	defaultExpiryInterval = time.Second
	// coapTick drives go-coap's retransmissions and connection expiry. Each
	// tick walks every peer's state, which at thousands of devices costs
	// real CPU; one second keeps the first retransmission within RFC 7252's
	// ACK_TIMEOUT × [1, 1.5] window (2–3 s).
	coapTick = time.Second
	// minIdleConn is how long go-coap keeps the per-peer state of a silent
	// device. Closing it loses nothing we need (observations are routed by
	// token here, not by go-coap), it only bounds memory: every peer
	// costs a goroutine.
	minIdleConn = 30 * time.Second
	// preloadPage is the page size when loading registrations at Start.
	preloadPage = 1000
)

// Server is the LwM2M server's CoAP endpoint.
type Server struct {
	cfg     Config
	store   storage.Store
	models  Models
	onEvent EventHandler
	log     *slog.Logger

	mu         sync.RWMutex
	byID       map[string]*client
	byEndpoint map[string]*client      // organisation + "\x00" + endpoint
	byAddr     map[string]*client      // transport + " " + address of the latest Register/Update
	tokens     map[string]*observation // observation token → observation
	transports map[string]*transport   // by name ("udp")

	// unloaded counts the clients whose stored observations are not in
	// tokens yet (loaded at Start, observations loaded lazily); while it
	// is not zero, an unknown token from an unknown address may still be
	// one of ours.
	unloaded atomic.Int64

	// orgTraffic holds each organisation's traffic counters (traffic.go);
	// entries are never removed, so totals outlive registrations.
	orgMu      sync.Mutex
	orgTraffic map[string]*counters

	// evCtx is the context events are delivered with: Start's, without
	// its cancellation, so that the events of a stopping server still
	// reach the handler.
	evCtx context.Context

	// gate lets Close wait for CoAP handlers in flight (they run on
	// go-coap's goroutines); closed is guarded by gate.
	gate   sync.RWMutex
	closed bool

	started   atomic.Bool
	closeOnce sync.Once
	cancel    context.CancelFunc
	udpSrv    *udpserver.Server
	udpConn   *coapNet.UDPConn
	wg        sync.WaitGroup // serve, expiry, periodic runner
}

// client is one registered device. Its registration is immutable once
// published (state); changes build a new state under mu.
type client struct {
	id, org, endpoint string

	// mu serialises changes of this client's registration and observations,
	// including their store writes, so that they reach the store in order
	// and take their places in events in that order. It is never held
	// across network I/O, nor while the event handler runs.
	mu        sync.Mutex
	removed   bool                        // deregistered, expired or replaced; guarded by mu
	obs       map[lwm2m.Path]*observation // guarded by mu
	obsLoaded bool                        // obs reflects the store; guarded by mu

	state atomic.Pointer[clientState]

	// events puts this client's events in line for the handler (events.go).
	events eventOrder

	traffic    counters  // this registration's traffic (traffic.go)
	orgTraffic *counters // the organisation's, shared with its other clients
}

// clientState is an immutable snapshot of a client's registration and how
// to reach it.
type clientState struct {
	reg  lwm2m.Registration
	peer peer
}

// peer is where a device is: the transport it registered over, its address
// and, for wildcard listeners, the local address it sent to.
type peer struct {
	t     *transport
	addr  *net.UDPAddr
	laddr *net.UDPAddr // nil when unknown (e.g. after a restart)
}

// transport describes a listener. The CoAP handler and the downlink code
// only use this, so DTLS can plug in its own.
type transport struct {
	name string
	// organisation returns the organisation of the peer behind cc.
	organisation func(cc *udpclient.Conn) (string, error)
	// conn returns the live connection to p, creating one if needed, so
	// that requests leave from the listening socket.
	conn func(p peer) (*udpclient.Conn, error)
}

// New returns a Server; Start makes it listen. models and onEvent may be nil.
func New(cfg Config, store storage.Store, models Models, onEvent EventHandler) *Server {
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = defaultRequestTimeout
	}
	if cfg.ExpiryCheckInterval <= 0 {
		cfg.ExpiryCheckInterval = defaultExpiryInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{
		cfg:        cfg,
		store:      store,
		models:     models,
		onEvent:    onEvent,
		log:        log.With("component", "lwm2m-endpoint"),
		byID:       make(map[string]*client),
		byEndpoint: make(map[string]*client),
		byAddr:     make(map[string]*client),
		tokens:     make(map[string]*observation),
		transports: make(map[string]*transport),
		orgTraffic: make(map[string]*counters),
		evCtx:      context.Background(),
	}
}

// Start loads the stored registrations, binds the UDP socket and serves in
// the background until Close (or until ctx is cancelled). When Start
// returns nil the server is answering.
func (s *Server) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("endpoint: start: already started")
	}
	l, err := coapNet.NewListenUDP("udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("endpoint: start: listen %s: %w", s.cfg.Addr, err)
	}
	s.udpConn = l
	// Set before anything can emit: handlers and the expiry loop read it.
	s.evCtx = context.WithoutCancel(ctx)
	udpT := &transport{
		name: "udp",
		organisation: func(*udpclient.Conn) (string, error) {
			return s.cfg.DefaultOrganisation, nil
		},
	}
	s.transports[udpT.name] = udpT

	if err := s.preload(ctx); err != nil {
		_ = l.Close()
		return fmt.Errorf("endpoint: start: %w", err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	serving := make(chan struct{})
	var servingOnce sync.Once
	idle := max(minIdleConn, 2*s.cfg.RequestTimeout)
	srv := udp.NewServer(
		options.WithContext(runCtx),
		options.WithHandlerFunc(s.handler(udpT)),
		options.WithProcessReceivedMessageFunc(s.processReceived),
		options.WithErrors(func(err error) { s.log.Debug("coap", "err", err) }),
		options.WithInactivityMonitor(idle, func(cc *udpclient.Conn) { _ = cc.Close() }),
		// go-coap calls the periodic runner from Serve once the listener
		// is set, which is the only way to learn that NewConn will work.
		options.WithPeriodicRunner(func(f func(time.Time) bool) {
			servingOnce.Do(func() { close(serving) })
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				t := time.NewTicker(coapTick)
				defer t.Stop()
				for {
					select {
					case now := <-t.C:
						if !f(now) {
							return
						}
					case <-runCtx.Done():
						return
					}
				}
			}()
		}),
	)
	s.udpSrv = srv
	listenAddr, _ := l.LocalAddr().(*net.UDPAddr)
	udpT.conn = func(p peer) (*udpclient.Conn, error) {
		laddr := p.laddr
		if laddr == nil {
			laddr = routeLocalAddr(listenAddr, p.addr)
		}
		if laddr != nil {
			return srv.NewConn(p.addr, laddr)
		}
		return srv.NewConn(p.addr)
	}

	serveErr := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := srv.Serve(l)
		if err != nil {
			s.log.Error("coap serve", "err", err)
		}
		serveErr <- err
	}()
	select {
	case <-serving:
	case err := <-serveErr:
		cancel()
		_ = l.Close()
		s.wg.Wait()
		if err == nil {
			err = errors.New("server stopped")
		}
		return fmt.Errorf("endpoint: start: %w", err)
	}

	s.wg.Add(1)
	go s.expiryLoop(runCtx)
	s.log.Info("listening", "transport", "udp", "addr", l.LocalAddr().String())
	return nil
}

// Addr returns the UDP address the server listens on (nil before Start).
func (s *Server) Addr() net.Addr {
	if s.udpConn == nil {
		return nil
	}
	return s.udpConn.LocalAddr()
}

// Close stops serving and waits for the server's goroutines. Events are
// delivered by the goroutines that serve the devices (and by the expiry
// loop), so every event of a message in flight has reached the handler
// when Close returns.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		if s.udpSrv != nil {
			s.udpSrv.Stop()
		}
		if s.udpConn != nil {
			err = s.udpConn.Close()
		}
		s.gate.Lock()
		s.closed = true
		s.gate.Unlock()
		s.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("endpoint: close: %w", err)
	}
	return nil
}

// preload loads every stored registration, so that Update, downlink and
// re-register (ID reuse) need no store read on the hot path.
func (s *Server) preload(ctx context.Context) error {
	for offset := 0; ; {
		regs, total, err := s.store.ListRegistrations(ctx, storage.RegistrationFilter{}, offset, preloadPage)
		if err != nil {
			return fmt.Errorf("load registrations: %w", err)
		}
		for _, reg := range regs {
			s.addStored(reg)
		}
		offset += len(regs)
		if len(regs) == 0 || offset >= total {
			break
		}
	}
	if n := len(s.byID); n > 0 {
		s.log.Info("loaded registrations", "count", n)
	}
	return nil
}

func (s *Server) addStored(reg lwm2m.Registration) {
	c := &client{id: reg.ID, org: reg.Organisation, endpoint: reg.Endpoint, orgTraffic: s.orgCounters(reg.Organisation)}
	p := peer{t: s.transports[reg.Transport]}
	if ap, err := netip.ParseAddrPort(reg.Address); err == nil {
		p.addr = net.UDPAddrFromAddrPort(ap)
	}
	c.state.Store(&clientState{reg: reg, peer: p})
	s.unloaded.Add(1)
	s.byID[c.id] = c
	s.byEndpoint[endpointKey(c.org, c.endpoint)] = c
	if p.t != nil && p.addr != nil {
		s.byAddr[addrKey(p.t, p.addr)] = c
	}
}

// routeLocalAddr guesses, for a wildcard listener, the local address a
// device at raddr talks to, when no request from it has told us yet (after
// a restart): the source address the kernel picks toward raddr. go-coap
// matches a device's answer to the connection keyed by the concrete local
// address, so a request sent on a connection keyed by the wildcard address
// never sees its answer once a concrete-keyed connection exists.
func routeLocalAddr(listen, raddr *net.UDPAddr) *net.UDPAddr {
	if listen == nil || (len(listen.IP) != 0 && !listen.IP.IsUnspecified()) {
		return nil
	}
	c, err := net.DialUDP("udp", nil, raddr) // connect only; nothing is sent
	if err != nil {
		return nil
	}
	defer c.Close()
	la, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil
	}
	l := *listen
	l.IP = la.IP
	return &l
}

func endpointKey(org, ep string) string { return org + "\x00" + ep }

func addrKey(t *transport, a *net.UDPAddr) string { return addrStrKey(t, a.String()) }

// addrStrKey is addrKey for an address already formatted by UDPAddr.String.
func addrStrKey(t *transport, addr string) string { return t.name + " " + addr }

// newID returns a URL-safe registration ID: 48 bits of the time in
// milliseconds, then 80 random bits. The time prefix keeps the IDs
// created together close in the store's ID index, so that a group commit
// of many registrations touches a few index pages instead of one page per
// registration; the random part keeps IDs unguessable.
func newID() string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// expiryLoop removes registrations whose lifetime has run out.
func (s *Server) expiryLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ExpiryCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.expire(ctx, now)
		}
	}
}

func (s *Server) expire(ctx context.Context, now time.Time) {
	regs, err := s.store.ExpiredRegistrations(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("list expired registrations", "err", err)
		}
		return
	}
	for _, reg := range regs {
		c := s.lookup(reg.ID)
		if c == nil {
			// Stored but not known here (written by someone else): the
			// store is the truth, so expire it all the same.
			if err := s.store.DeleteRegistration(ctx, reg.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
				s.log.Error("delete expired registration", "id", reg.ID, "err", err)
				continue
			}
			s.log.Info("registration expired", "id", reg.ID, "endpoint", reg.Endpoint)
			// No client, so no other event of it to keep in line with.
			s.deliver(pendingEvent{ev: Event{Type: EventExpired, Registration: reg, Time: now}})
			continue
		}
		c.mu.Lock()
		st := c.state.Load()
		var pe pendingEvent
		// The in-memory state is authoritative: an Update may have
		// refreshed the registration after the store was queried.
		if !c.removed && st != nil && st.reg.Expired(now) {
			var err error
			if pe, err = s.removeLocked(ctx, c, st, EventExpired, now); err != nil {
				s.log.Error("expire registration", "id", c.id, "err", err)
			} else {
				s.log.Info("registration expired", "id", c.id, "endpoint", c.endpoint)
			}
		}
		c.mu.Unlock()
		s.deliver(pe)
	}
}

// lookup returns the client with that ID, or nil.
func (s *Server) lookup(id string) *client {
	s.mu.RLock()
	c := s.byID[id]
	s.mu.RUnlock()
	return c
}

// current returns a registered client and its state, or an error wrapping
// lwm2m.ErrClientNotFound.
func (s *Server) current(id string) (*client, *clientState, error) {
	c := s.lookup(id)
	if c == nil {
		return nil, nil, lwm2m.ErrClientNotFound
	}
	st := c.state.Load()
	if st == nil {
		return nil, nil, lwm2m.ErrClientNotFound
	}
	return c, st, nil
}

// resolver returns the object model of org, or nil (codecs accept nil).
func (s *Server) resolver(org string) lwm2m.Resolver {
	if s.models == nil {
		return nil
	}
	return s.models.Resolver(org)
}
