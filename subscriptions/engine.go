package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// Device is the device-management API the engine observes through
// (satisfied by the CoAP endpoint).
type Device interface {
	Read(ctx context.Context, clientID string, p lwm2m.Path) ([]lwm2m.Record, error)
	// SetDeviceInfo records what the engine read from the client's object 3
	// on its registration and returns the updated registration.
	SetDeviceInfo(ctx context.Context, clientID string, info lwm2m.DeviceInfo) (lwm2m.Registration, error)
	WriteAttributes(ctx context.Context, clientID string, p lwm2m.Path, a lwm2m.Attributes) error
	Observe(ctx context.Context, clientID string, p lwm2m.Path) ([]lwm2m.Record, error)
	CancelObserve(ctx context.Context, clientID string, p lwm2m.Path) error
}

// Renderer turns an instance's records into the notification "Value" (the
// REST layer supplies it: fields keyed by SerialisationName). p is the
// subscription's path: the instance, or the resource for a Property.
type Renderer func(org string, p lwm2m.Path, recs []lwm2m.Record) any

// Config configures an Engine. Store and Device are required.
type Config struct {
	Store  storage.Store
	Device Device
	// Render renders observed values; nil keys them by resource ID.
	Render Renderer
	// HTTPClient sends webhooks; nil means a client with a 30 s timeout per attempt.
	HTTPClient *http.Client
	// RetryMax is how many times DeletionPolicy 0 retries after the first
	// attempt: 0 means 3, negative means none.
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the DeletionPolicy 0 backoff
	// (defaults 100 ms and 2 s); RetryWaitMin is also the first DeletionPolicy 1 wait.
	RetryWaitMin, RetryWaitMax time.Duration
	// DurableRetryWaitMax caps the DeletionPolicy 1 backoff (default 1 min).
	DurableRetryWaitMax time.Duration
	// QueueSize bounds each DeletionPolicy 0 subscription's in-memory queue (default 1000).
	QueueSize int
	// AllowedDestinations, when not empty, limits webhook URLs to these
	// destinations: host names ("hooks.example.com"), domain wildcards
	// ("*.example.com"), IP addresses and CIDR networks ("192.0.2.0/24").
	// A URL naming a host must match a name entry, or resolve only to
	// addresses in the networks; the check is repeated when connecting.
	AllowedDestinations []string
	// SkipDeviceInfo turns off reading object 3 (make, model, serial,
	// firmware) after each registration; Manufacturer criteria then never match.
	SkipDeviceInfo bool
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock for filtering and timestamps; nil means time.Now.
	Now func() time.Time
	// AfterFunc schedules f after d and returns a function that cancels it,
	// for the pmin quiet period; nil means time.AfterFunc. Tests inject it
	// together with Now.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// Engine is the subscription engine. Its methods are safe for concurrent use.
type Engine struct {
	store     storage.Store
	dev       Device
	render    Renderer
	http      *http.Client
	log       *slog.Logger
	now       func() time.Time
	afterFunc func(time.Duration, func()) func() bool

	dest     *destinations
	skipInfo bool

	retryMax         int
	waitMin, waitMax time.Duration
	durableWaitMax   time.Duration
	queueSize        int
	root             context.Context
	stop             context.CancelFunc
	wg               sync.WaitGroup // workers, timers and background device work in flight
	background       sync.WaitGroup // background device work only, for tests to wait on

	// index holds the lifecycle subscriptions for the event path; subMu
	// serialises their creation, updates and deletion with the index
	// updates that follow the store writes (see lifecycleIndex).
	index *lifecycleIndex
	subMu sync.Mutex
	// pre holds the organisation-level Observation subscriptions (also
	// under subMu); groups the group membership, changed under groupMu.
	pre     *preIndex
	groups  *groupIndex
	groupMu sync.Mutex
	// subs holds every subscription by ID, written through after each
	// store write (with index and pre), so that delivering reads nothing.
	subs *subCache

	// outcome, when set (by tests, before any event), is told of every
	// delivery's end: delivered or dropped.
	outcome func(subscriptionID string, delivered bool)

	mu              sync.Mutex // guards the fields below
	closed, started bool
	clients         map[string]*clientState
	workers         map[string]*worker
	drops           map[string]*dropCount // by subscription ID
}

// Patch is a change to a subscription (PUT); nil fields are left alone.
type Patch struct {
	URL, AcceptContentType *string
	Attributes             *lwm2m.Attributes
	DeletionPolicy         *int
	Secret                 *string
	Headers                *map[string]string
}

// CreateOption changes how Create applies a subscription.
type CreateOption func(*createOptions)

type createOptions struct{ later bool }

// ApplyLater makes an organisation-level Observation pre-subscription apply
// to the devices online now only at their next registration or update,
// instead of at once (the compatibility API's needNotification: false).
func ApplyLater() CreateOption { return func(o *createOptions) { o.later = true } }

// New returns an engine; call Start to resume delivery of stored
// notifications, and Close to stop it.
func New(cfg Config) *Engine {
	e := &Engine{
		store:          cfg.Store,
		dev:            cfg.Device,
		render:         cfg.Render,
		http:           cfg.HTTPClient,
		log:            cfg.Logger,
		now:            cfg.Now,
		afterFunc:      cfg.AfterFunc,
		retryMax:       cfg.RetryMax,
		waitMin:        cfg.RetryWaitMin,
		waitMax:        cfg.RetryWaitMax,
		durableWaitMax: cfg.DurableRetryWaitMax,
		queueSize:      cfg.QueueSize,
		index:          newLifecycleIndex(),
		pre:            newPreIndex(),
		subs:           &subCache{m: make(map[string]storage.Subscription)},
		groups:         newGroupIndex(),
		dest:           newDestinations(cfg.AllowedDestinations),
		skipInfo:       cfg.SkipDeviceInfo,
		clients:        make(map[string]*clientState),
		workers:        make(map[string]*worker),
		drops:          make(map[string]*dropCount),
	}
	if e.render == nil {
		e.render = defaultRender
	}
	if e.http == nil {
		// An own transport: go-retryablehttp closes idle connections after
		// a failure, which must not disturb the rest of the process.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = e.dest.dialer()
		tr.MaxIdleConnsPerHost = maxPerDestination
		e.http = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	}
	// A redirect is an answer like any other non-2xx: following it could
	// lead past the allow-list, and the subscriber should fix its URL.
	hc := *e.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc.Transport = newLimiter(hc.Transport)
	e.http = &hc
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.afterFunc == nil {
		e.afterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	switch {
	case e.retryMax == 0:
		e.retryMax = 3
	case e.retryMax < 0:
		e.retryMax = 0
	}
	if e.waitMin <= 0 {
		e.waitMin = 100 * time.Millisecond
	}
	if e.waitMax <= 0 {
		e.waitMax = 2 * time.Second
	}
	if e.durableWaitMax <= 0 {
		e.durableWaitMax = time.Minute
	}
	e.waitMax = max(e.waitMax, e.waitMin)
	e.durableWaitMax = max(e.durableWaitMax, e.waitMin)
	if e.queueSize <= 0 {
		e.queueSize = 1000
	}
	e.root, e.stop = context.WithCancel(context.Background())
	return e
}

// Start loads the lifecycle and Observation subscriptions and resumes
// delivery of the notifications left in the store's outbox (DeletionPolicy 1).
// Call it before raising events: they find their subscriptions in memory,
// which until then holds only those created through this engine.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.closed || e.started {
		e.mu.Unlock()
		return errors.New("subscriptions: start: engine already started or closed")
	}
	e.started = true
	e.mu.Unlock()

	if err := e.loadLifecycle(ctx); err != nil {
		return fmt.Errorf("subscriptions: start: %w", err)
	}
	if err := e.loadObservations(ctx); err != nil {
		return fmt.Errorf("subscriptions: start: %w", err)
	}

	ids, err := e.store.SubscriptionsWithPending(ctx)
	if err != nil {
		return fmt.Errorf("subscriptions: start: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		if e.closed {
			break
		}
		e.startWorkerLocked(id, true).storeKick = true
	}
	return nil
}

// loadObservations rebuilds the device observations: client-level
// subscriptions on their client, pre-subscriptions on the online clients
// they match. The endpoint keeps device observations across restarts
// (their tokens are stored), so an observation the store lists for an
// online client is taken as in place, with the attributes this engine
// would have written; the others are established in the background.
func (e *Engine) loadObservations(ctx context.Context) error {
	groups, err := e.store.ListGroups(ctx, "")
	if err != nil {
		return err
	}
	for _, g := range groups {
		e.groups.put(g)
	}
	subs, err := e.store.ListSubscriptions(ctx, storage.SubscriptionFilter{Type: TypeObservation})
	if err != nil {
		return err
	}
	regs := make(map[string]*lwm2m.Registration) // online clients by ID; nil: offline
	load := func(id string) (*lwm2m.Registration, error) {
		if r, seen := regs[id]; seen {
			return r, nil
		}
		reg, err := e.store.GetRegistration(ctx, id)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			regs[id] = nil
		case err != nil:
			return nil, err
		case reg.Expired(e.now()):
			regs[id] = nil
		default:
			regs[id] = &reg
		}
		return regs[id], nil
	}
	for _, s := range subs {
		p, err := lwm2m.ParsePath(s.Path)
		if err != nil {
			e.log.Warn("subscriptions: start: skipping malformed observation", "subscription", s.ID, "path", s.Path)
			continue
		}
		e.subs.put(s)
		if s.ClientID == "" {
			e.pre.put(s)
			continue
		}
		if _, err := load(s.ClientID); err != nil {
			return err
		}
		cl := e.client(s.ClientID)
		cl.mu.Lock()
		cl.observation(p).subs[s.ID] = newSubState(s, p)
		cl.mu.Unlock()
	}
	for _, org := range e.pre.orgs() {
		online := true
		for offset := 0; ; offset += preloadPage {
			page, _, err := e.store.ListRegistrations(ctx, storage.RegistrationFilter{Organisation: org, Online: &online, Now: e.now()}, offset, preloadPage)
			if err != nil {
				return err
			}
			for i := range page {
				regs[page[i].ID] = &page[i]
				e.reconcile(ctx, page[i])
			}
			if len(page) < preloadPage {
				break
			}
		}
	}
	var pending []string
	e.mu.Lock()
	clients := make([]*clientState, 0, len(e.clients))
	for _, cl := range e.clients {
		clients = append(clients, cl)
	}
	e.mu.Unlock()
	for _, cl := range clients {
		if reg, err := load(cl.id); err != nil {
			return err
		} else if reg == nil {
			continue
		}
		stored, err := e.store.ListObservations(ctx, cl.id)
		if err != nil {
			return err
		}
		cl.mu.Lock()
		for _, so := range stored {
			p, err := lwm2m.ParsePath(so.Path)
			if o := cl.obs[p]; err == nil && o != nil && len(o.subs) > 0 {
				o.observed = true
				o.written = combine(o.attributes(""))
			}
		}
		for _, o := range cl.obs {
			if len(o.subs) > 0 && !o.observed {
				pending = append(pending, cl.id)
				break
			}
		}
		cl.mu.Unlock()
	}
	for _, id := range pending {
		e.establishLater(id)
	}
	return nil
}

// establishLater establishes a client's missing device observations in
// the background.
func (e *Engine) establishLater(clientID string) {
	e.inBackground(func(ctx context.Context) { e.establishAll(ctx, clientID) })
}

// inBackground runs f in a goroutine that Close waits for (and tests, on
// Engine.background), with a context that ends when the engine closes;
// false, and f not run, once the engine is closed.
func (e *Engine) inBackground(f func(ctx context.Context)) bool {
	if !e.enter() {
		return false
	}
	e.background.Add(1)
	go func() {
		defer e.wg.Done()
		defer e.background.Done()
		f(e.root)
	}()
	return true
}

// loadLifecycle fills the lifecycle index from the store. Holding subMu
// keeps a concurrent Create, Update or Delete from being undone by the older
// state read here.
func (e *Engine) loadLifecycle(ctx context.Context) error {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	for _, typ := range lifecycleTypes {
		subs, err := e.store.ListSubscriptions(ctx, storage.SubscriptionFilter{Type: typ})
		if err != nil {
			return err
		}
		for _, s := range subs {
			e.index.put(s)
			e.subs.put(s)
		}
	}
	return nil
}

// Close stops the workers and timers and waits for them. Notifications of
// DeletionPolicy 1 subscriptions stay in the store; those of DeletionPolicy
// 0 still queued are lost.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	clients := make([]*clientState, 0, len(e.clients))
	for _, cl := range e.clients {
		clients = append(clients, cl)
	}
	e.mu.Unlock()
	e.stop()
	for _, cl := range clients {
		cl.mu.Lock()
		for _, o := range cl.obs {
			for _, st := range o.subs {
				st.stopTimer()
			}
		}
		cl.mu.Unlock()
	}
	e.wg.Wait()
	return nil
}

// enter registers an event or timer callback in flight, so that Close waits
// for it before the caller closes the store; false once closed.
func (e *Engine) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

// Create validates and stores a new subscription, assigning its ID and
// CreatedAt. An Observation on an online client is first established on the
// device (Write-Attributes, Observe); a device error is returned and nothing
// is stored. Validation failures are *ValidationError.
func (e *Engine) Create(ctx context.Context, s storage.Subscription, opts ...CreateOption) (storage.Subscription, error) {
	if err := e.validate(ctx, s); err != nil {
		return storage.Subscription{}, fmt.Errorf("subscriptions: create: %w", err)
	}
	var o createOptions
	for _, opt := range opts {
		opt(&o)
	}
	s.ID = newID()
	s.CreatedAt = e.now().UTC()
	if s.Type == TypeObservation && s.ClientID == "" {
		p, _ := lwm2m.ParsePath(s.Path) // validated
		s.Path = p.String()
		if err := e.createPre(ctx, s, o.later); err != nil {
			return storage.Subscription{}, fmt.Errorf("subscriptions: create: %w", err)
		}
		return s, nil
	}
	if s.Type == TypeObservation {
		p, _ := lwm2m.ParsePath(s.Path) // validated
		s.Path = p.String()
		if err := e.createObservation(ctx, s, p); err != nil {
			return storage.Subscription{}, fmt.Errorf("subscriptions: create: %w", err)
		}
		return s, nil
	}
	// A lifecycle subscription (validate admits no other type).
	e.subMu.Lock()
	defer e.subMu.Unlock()
	if err := e.store.CreateSubscription(ctx, s); err != nil {
		return storage.Subscription{}, fmt.Errorf("subscriptions: create: %w", err)
	}
	e.index.put(s)
	e.subs.put(s)
	return s, nil
}

// Update applies patch to the subscription. Changed attributes of an
// Observation are written to the device when it is observed; a device error
// is returned and nothing is changed.
func (e *Engine) Update(ctx context.Context, id string, patch Patch) (storage.Subscription, error) {
	s, err := e.store.GetSubscription(ctx, id)
	if err != nil {
		return storage.Subscription{}, fmt.Errorf("subscriptions: update: %w", err)
	}
	lifecycle := isLifecycle(s.Type) // a subscription's type never changes
	if lifecycle {
		e.subMu.Lock()
		defer e.subMu.Unlock()
		// Read again under the lock, so that concurrent updates apply in
		// turn and the index ends with the store's last version.
		if s, err = e.store.GetSubscription(ctx, id); err != nil {
			return storage.Subscription{}, fmt.Errorf("subscriptions: update: %w", err)
		}
	}
	old := s
	if patch.URL != nil {
		s.URL = *patch.URL
	}
	if patch.AcceptContentType != nil {
		s.AcceptContentType = *patch.AcceptContentType
	}
	if patch.Attributes != nil {
		s.Attributes = *patch.Attributes
	}
	if patch.DeletionPolicy != nil {
		s.DeletionPolicy = *patch.DeletionPolicy
	}
	if patch.Secret != nil {
		s.Secret = *patch.Secret
	}
	if patch.Headers != nil {
		s.Headers = *patch.Headers
	}
	if err := e.validate(ctx, s); err != nil {
		return storage.Subscription{}, fmt.Errorf("subscriptions: update: %w", err)
	}
	switch {
	case s.Type == TypeObservation && s.ClientID == "":
		err = e.updatePre(ctx, s, !sameAttributes(old.Attributes, s.Attributes))
	case s.Type == TypeObservation:
		err = e.updateObservation(ctx, s, !sameAttributes(old.Attributes, s.Attributes))
	default:
		err = e.store.UpdateSubscription(ctx, s)
	}
	if err != nil {
		return storage.Subscription{}, fmt.Errorf("subscriptions: update: %w", err)
	}
	if lifecycle {
		e.index.put(s)
		e.subs.put(s)
	}
	if s.URL != old.URL || s.Secret != old.Secret || s.AcceptContentType != old.AcceptContentType || s.DeletionPolicy != old.DeletionPolicy || !maps.Equal(s.Headers, old.Headers) {
		e.retarget(id)
	}
	return s, nil
}

// Delete deletes the subscription, its undelivered notifications and, when
// no other subscription needs it, the device observation. Device errors
// while cancelling are logged, not returned: the subscription is gone either way.
func (e *Engine) Delete(ctx context.Context, id string) error {
	s, err := e.store.GetSubscription(ctx, id)
	if err != nil {
		return fmt.Errorf("subscriptions: delete: %w", err)
	}
	switch {
	case s.Type == TypeObservation && s.ClientID == "":
		err = e.deletePre(ctx, s)
	case s.Type == TypeObservation:
		err = e.deleteObservation(ctx, s)
	default:
		err = e.deleteLifecycle(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("subscriptions: delete: %w", err)
	}
	e.stopWorker(id)
	return nil
}

func (e *Engine) deleteLifecycle(ctx context.Context, id string) error {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	if err := e.store.DeleteSubscription(ctx, id); err != nil {
		return err
	}
	e.index.remove(id)
	e.subs.remove(id)
	return nil
}

// subscription returns the current version of a subscription for its
// worker: from memory, so that a delivery reads nothing from the store,
// else (not known to this engine) from the store.
func (e *Engine) subscription(ctx context.Context, id string) (storage.Subscription, error) {
	if s, ok := e.subs.get(id); ok {
		return s, nil
	}
	return e.store.GetSubscription(ctx, id)
}

// subCache is a write-through map of subscriptions by ID.
type subCache struct {
	mu sync.RWMutex
	m  map[string]storage.Subscription
}

func (c *subCache) put(s storage.Subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[s.ID] = s
}

func (c *subCache) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

func (c *subCache) get(id string) (storage.Subscription, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.m[id]
	return s, ok
}

// Stats returns the subscription's delivery statistics and the number of
// notifications waiting for delivery (outbox and in-memory queue).
func (e *Engine) Stats(ctx context.Context, id string) (storage.DeliveryStats, int, error) {
	// Drops not yet in the store are added from memory; dc.write keeps
	// them from moving to the store in between (see dropCount).
	e.mu.Lock()
	dc := e.drops[id]
	e.mu.Unlock()
	if dc != nil {
		dc.write.Lock()
		defer dc.write.Unlock()
	}
	// GetDeliveryStats also answers whether the subscription exists
	// (ErrNotFound), so the subscription itself is not read again.
	st, err := e.store.GetDeliveryStats(ctx, id)
	if err != nil {
		return storage.DeliveryStats{}, 0, fmt.Errorf("subscriptions: stats: %w", err)
	}
	n, err := e.store.PendingCount(ctx, id)
	if err != nil {
		return storage.DeliveryStats{}, 0, fmt.Errorf("subscriptions: stats: %w", err)
	}
	e.mu.Lock()
	if w := e.workers[id]; w != nil {
		n += len(w.mem)
	}
	if dc != nil {
		st.Dropped += dc.pending.Dropped
		if dc.pending.LastError != "" {
			st.LastError = dc.pending.LastError
		}
	}
	e.mu.Unlock()
	return st, n, nil
}

// online reports whether the client has a registration that has not expired.
// An unknown client is offline: client-level subscriptions outlive
// registrations (the ID is stable per endpoint) and apply when it returns.
func (e *Engine) online(ctx context.Context, clientID string) (bool, error) {
	reg, err := e.store.GetRegistration(ctx, clientID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !reg.Expired(e.now()), nil
}
