// Package sim is a simulated LwM2M 1.0/1.1 client speaking CoAP over UDP.
// It registers with a server, keeps its registration up to date, and serves
// the server's device-management and observe requests on the same socket,
// holding the Server (1), Device (3) and Temperature (3303) objects.
package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/corelink"
)

// Config describes one simulated device.
type Config struct {
	Endpoint string // endpoint client name (ep=)
	Server   string // host:port of the LwM2M server
	Lifetime uint32 // seconds, default 300
	Version  string // "1.1" (default) or "1.0"; 1.0 prefers TLV and announces no ct=
	Binding  string // default "U"

	// Object 3 values; defaults are used for empty fields.
	Manufacturer, Model, Serial, Firmware string

	// VaryEvery, when > 0, moves the 3303/0 temperature by a random walk at
	// this period (notifying observers as Set does).
	VaryEvery time.Duration

	// Timeout bounds each request to the server when the caller's context
	// has no deadline; go-coap would otherwise wait forever for a lost
	// answer. Default 30s.
	Timeout time.Duration

	// Light skips the automatic Update and VaryEvery goroutines, for load
	// tests where thousands of devices should cost next to no CPU. The
	// device still answers the server's requests.
	Light bool

	Logger *slog.Logger // default: discard
}

// Execution is one Execute the server sent to the device.
type Execution struct {
	Path lwm2m.Path
	Args string
}

// ServerError is a Register/Update/De-register answered with something other
// than the expected success code.
type ServerError struct {
	Op   string // "register", "update", "deregister"
	Code codes.Code
	Msg  string // diagnostic payload, if any
}

// Error renders the operation, the CoAP code and the diagnostic.
func (e *ServerError) Error() string {
	s := fmt.Sprintf("sim: %s: server answered %s", e.Op, codeString(e.Code))
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// codeString renders a CoAP code as "2.01".
func codeString(c codes.Code) string {
	return fmt.Sprintf("%d.%02d", uint8(c)>>5, uint8(c)&0x1f)
}

// Device is one simulated LwM2M client. Its methods are safe for concurrent use.
type Device struct {
	cfg   Config
	log   *slog.Logger
	clock clock

	// ctx lives from Start to Close and stops the background goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	executed chan Execution
	// updateNow asks the update loop for an immediate Update (Registration
	// Update Trigger, a written lifetime or binding).
	updateNow chan bool
	// notifyQ carries notifications to the single sender goroutine, so that
	// they leave in Observe-sequence order and Set never blocks on the
	// network. It and sentMIDs are made on the first notification, so that
	// thousands of load-test devices that are never observed stay small.
	notifyQ    chan notification // guarded by mu
	senderOnce sync.Once

	mu        sync.Mutex
	conn      *udpclient.Conn
	started   bool
	closed    bool
	regPath   string // "/rd/<id>" while registered
	regLt     uint32 // lifetime last sent to the server
	regBind   string // binding last sent to the server
	stopLoop  context.CancelFunc
	store     *store
	attrs     map[lwm2m.Path]lwm2m.Attributes
	obs       map[string]*observation // by token
	obsSeq    uint32
	sentMIDs  []midToken // ring of recent notification message IDs, to match RSTs
	sentNext  int
	notifyCnt uint64
}

type midToken struct {
	mid   int32
	token string
	used  bool
}

// New returns a device for cfg with defaults filled in. It does no I/O.
func New(cfg Config) *Device {
	if cfg.Lifetime == 0 {
		cfg.Lifetime = 300
	}
	if cfg.Version == "" {
		cfg.Version = "1.1"
	}
	if cfg.Binding == "" {
		cfg.Binding = "U"
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = "sim"
	}
	if cfg.Manufacturer == "" {
		cfg.Manufacturer = "DeviceServer"
	}
	if cfg.Model == "" {
		cfg.Model = "lwm2m-sim"
	}
	if cfg.Serial == "" {
		cfg.Serial = "SIM-" + cfg.Endpoint
	}
	if cfg.Firmware == "" {
		cfg.Firmware = "1.0.0"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Device{
		cfg:       cfg,
		log:       cfg.Logger.With("endpoint", cfg.Endpoint),
		clock:     realClock{},
		ctx:       ctx,
		cancel:    cancel,
		executed:  make(chan Execution, 16),
		updateNow: make(chan bool, 1),
		store:     newStore(cfg),
		attrs:     map[lwm2m.Path]lwm2m.Attributes{},
		obs:       map[string]*observation{},
	}
}

// Start dials the server and registers. It returns once the server answered
// 2.01 Created, or with an error (a *ServerError when the server refused).
// ctx bounds only the registration; the device runs until Deregister or
// Close. A device starts once; Close releases its socket even after a
// failed Start.
func (d *Device) Start(ctx context.Context) error {
	d.mu.Lock()
	if d.started || d.closed {
		d.mu.Unlock()
		return errors.New("sim: start: device already started")
	}
	d.started = true
	d.mu.Unlock()

	conn, err := dial(d.cfg.Server,
		options.WithMux(mux.HandlerFunc(d.serve)),
		options.WithContext(d.ctx),
		options.WithErrors(func(err error) { d.log.Debug("coap", "err", err) }),
		// Without block-wise, a notification leaves with the message ID
		// the device chose, which is how an RST (it carries no token) is
		// matched to its observation. The simulator's payloads fit in one
		// datagram.
		options.WithBlockwise(false, blockwise.SZX1024, time.Minute),
	)
	if err != nil {
		return fmt.Errorf("sim: dial %s: %w", d.cfg.Server, err)
	}
	d.mu.Lock()
	d.conn = conn
	d.mu.Unlock()

	if err := d.register(ctx); err != nil {
		return err
	}
	if !d.cfg.Light {
		d.startLoops()
	}
	return nil
}

// startLoops runs the automatic Update and the temperature random walk.
func (d *Device) startLoops() {
	loopCtx, stop := context.WithCancel(d.ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		stop()
		return
	}
	d.stopLoop = stop
	// Under d.mu, so that the Adds cannot race with Close's wg.Wait.
	d.wg.Add(1)
	go d.updateLoop(loopCtx)
	if d.cfg.VaryEvery > 0 {
		d.wg.Add(1)
		go d.varyLoop(loopCtx)
	}
}

// requestCtx applies the default timeout when ctx has no deadline.
func (d *Device) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d.cfg.Timeout)
}

// registerPayload is the CoRE link list of the root and the object instances.
func (d *Device) registerPayload() []byte {
	root := corelink.Link{Target: "/", Params: []corelink.Param{{Key: "rt", Value: "oma.lwm2m", HasValue: true}}}
	if d.cfg.Version != "1.0" {
		root.Params = append(root.Params, corelink.Param{Key: "ct", Value: strconv.Itoa(int(lwm2m.FormatSenMLJSON)), HasValue: true})
	}
	links := []corelink.Link{root}
	d.mu.Lock()
	for _, o := range []uint16{objServer, objDevice, objTemperature} {
		for _, i := range d.store.instanceIDs(o) {
			links = append(links, corelink.Link{Target: lwm2m.InstancePath(o, i).String()})
		}
	}
	d.mu.Unlock()
	return corelink.Format(links)
}

func (d *Device) lifetime() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.store.values[lwm2m.ResourcePath(objServer, 0, resServerLifetime)].(int64); ok && v > 0 && v <= math.MaxUint32 {
		return uint32(v)
	}
	return d.cfg.Lifetime
}

func (d *Device) binding() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.store.values[lwm2m.ResourcePath(objServer, 0, resServerBinding)].(string); ok && v != "" {
		return v
	}
	return d.cfg.Binding
}

func (d *Device) getConn() (*udpclient.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return nil, errors.New("not started")
	}
	return d.conn, nil
}

// register sends POST /rd?ep=..&lt=..&lwm2m=..&b=.. and records the location.
func (d *Device) register(ctx context.Context) error {
	conn, err := d.getConn()
	if err != nil {
		return fmt.Errorf("sim: register: %w", err)
	}
	ctx, cancel := d.requestCtx(ctx)
	defer cancel()
	lt, b := d.lifetime(), d.binding()
	req, err := conn.NewPostRequest(ctx, "/rd", message.AppLinkFormat, bytes.NewReader(d.registerPayload()))
	if err != nil {
		return fmt.Errorf("sim: register: %w", err)
	}
	defer conn.ReleaseMessage(req)
	req.AddQuery("ep=" + d.cfg.Endpoint)
	req.AddQuery("lt=" + strconv.FormatUint(uint64(lt), 10))
	req.AddQuery("lwm2m=" + d.cfg.Version)
	req.AddQuery("b=" + b)
	resp, err := conn.Do(req)
	if err != nil {
		return fmt.Errorf("sim: register: %w", err)
	}
	defer conn.ReleaseMessage(resp)
	if resp.Code() != codes.Created {
		return &ServerError{Op: "register", Code: resp.Code(), Msg: diagnostic(resp)}
	}
	loc, err := resp.Options().LocationPath()
	if err != nil || loc == "" {
		return fmt.Errorf("sim: register: 2.01 without Location-Path: %w", err)
	}
	d.mu.Lock()
	d.regPath, d.regLt, d.regBind = loc, lt, b
	d.mu.Unlock()
	d.log.Info("registered", "location", loc, "lifetime", lt)
	return nil
}

// diagnostic returns a response's payload as text, for error messages.
func diagnostic(m *pool.Message) string {
	b, err := m.ReadBody()
	if err != nil || len(b) > 200 {
		return ""
	}
	return string(b)
}

// Update sends a registration Update (POST /rd/<id>), with lt or b when they
// changed since they were last sent, and with the object links when
// withObjects is true.
func (d *Device) Update(ctx context.Context, withObjects bool) error {
	conn, err := d.getConn()
	if err != nil {
		return fmt.Errorf("sim: update: %w", err)
	}
	d.mu.Lock()
	path, sentLt, sentBind := d.regPath, d.regLt, d.regBind
	d.mu.Unlock()
	if path == "" {
		return errors.New("sim: update: not registered")
	}
	ctx, cancel := d.requestCtx(ctx)
	defer cancel()
	var req *pool.Message
	if withObjects {
		req, err = conn.NewPostRequest(ctx, path, message.AppLinkFormat, bytes.NewReader(d.registerPayload()))
	} else {
		req, err = conn.NewPostRequest(ctx, path, message.TextPlain, nil)
	}
	if err != nil {
		return fmt.Errorf("sim: update: %w", err)
	}
	defer conn.ReleaseMessage(req)
	lt, b := d.lifetime(), d.binding()
	if lt != sentLt {
		req.AddQuery("lt=" + strconv.FormatUint(uint64(lt), 10))
	}
	if b != sentBind {
		req.AddQuery("b=" + b)
	}
	resp, err := conn.Do(req)
	if err != nil {
		return fmt.Errorf("sim: update: %w", err)
	}
	defer conn.ReleaseMessage(resp)
	if resp.Code() != codes.Changed {
		return &ServerError{Op: "update", Code: resp.Code(), Msg: diagnostic(resp)}
	}
	d.mu.Lock()
	d.regLt, d.regBind = lt, b
	d.mu.Unlock()
	d.log.Info("updated", "location", path, "objects", withObjects)
	return nil
}

// Deregister stops the automatic Update and sends DELETE /rd/<id>. The
// socket stays open until Close.
func (d *Device) Deregister(ctx context.Context) error {
	conn, err := d.getConn()
	if err != nil {
		return fmt.Errorf("sim: deregister: %w", err)
	}
	d.mu.Lock()
	path := d.regPath
	if d.stopLoop != nil {
		d.stopLoop()
	}
	d.mu.Unlock()
	if path == "" {
		return errors.New("sim: deregister: not registered")
	}
	ctx, cancel := d.requestCtx(ctx)
	defer cancel()
	resp, err := conn.Delete(ctx, path)
	if err != nil {
		return fmt.Errorf("sim: deregister: %w", err)
	}
	defer conn.ReleaseMessage(resp)
	if resp.Code() != codes.Deleted {
		return &ServerError{Op: "deregister", Code: resp.Code(), Msg: diagnostic(resp)}
	}
	d.mu.Lock()
	d.regPath = ""
	d.mu.Unlock()
	d.log.Info("deregistered", "location", path)
	return nil
}

// Close stops the device without de-registering and closes its socket.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	conn := d.conn
	for _, o := range d.obs {
		o.stopTimers()
	}
	clear(d.obs)
	d.mu.Unlock()
	d.cancel()
	var err error
	if conn != nil {
		err = conn.Close()
		<-conn.Done()
	}
	d.wg.Wait()
	if err != nil {
		return fmt.Errorf("sim: close: %w", err)
	}
	return nil
}

// RegistrationPath returns the Location-Path the server gave ("/rd/<id>"),
// or "" when not registered.
func (d *Device) RegistrationPath() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.regPath
}

// LocalAddr returns the device's UDP address (host:port), or "" before Start.
func (d *Device) LocalAddr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return ""
	}
	return d.conn.LocalAddr().String()
}

// Executed delivers the Executes the server sent. It is buffered; when
// nobody reads it, further executions are dropped (and logged).
func (d *Device) Executed() <-chan Execution { return d.executed }

// triggerUpdate asks for an Update without blocking the CoAP handler: the
// handler runs on the connection's receive goroutine, so a request sent
// from it could never see its answer.
func (d *Device) triggerUpdate() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.stopLoop != nil {
		select {
		case d.updateNow <- true:
		default:
		}
		return
	}
	// Under d.mu, so that it cannot race with Close's wg.Wait.
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.Update(d.ctx, false); err != nil {
			d.log.Warn("triggered update failed", "err", err)
		}
	}()
}

// updateLoop sends an Update every lifetime/2, as real clients do, and
// re-registers when the server no longer knows the registration.
func (d *Device) updateLoop(ctx context.Context) {
	defer d.wg.Done()
	t := time.NewTimer(updateInterval(d.lifetime()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.updateNow:
		}
		err := d.Update(ctx, false)
		var se *ServerError
		if errors.As(err, &se) && se.Code == codes.NotFound {
			d.log.Info("registration lost, registering again")
			err = d.register(ctx)
		}
		if err != nil && ctx.Err() == nil {
			d.log.Warn("update failed", "err", err)
		}
		t.Reset(updateInterval(d.lifetime()))
	}
}

func updateInterval(lifetime uint32) time.Duration {
	iv := time.Duration(lifetime) * time.Second / 2
	if iv < time.Second {
		iv = time.Second
	}
	return iv
}

// varyLoop moves the temperature by a bounded random walk.
func (d *Device) varyLoop(ctx context.Context) {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.VaryEvery)
	defer t.Stop()
	p := lwm2m.ResourcePath(objTemperature, 0, resSensorValue)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, ok := d.Get(p)
		if !ok {
			continue
		}
		v := cur.(float64) + rand.NormFloat64()*0.5
		v = math.Round(math.Max(-40, math.Min(85, v))*100) / 100
		d.Set(p, v)
	}
}

// Get returns the value of a single resource (depth 3) or resource instance
// (depth 4). A multiple resource at depth 3 comes back as map[uint16]any.
func (d *Device) Get(p lwm2m.Path) (any, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch p.Depth {
	case lwm2m.DepthResource:
		def, ok := resourceDef(p.Object, p.Resource)
		if !ok || !d.store.instances[p.Parent()] {
			return nil, false
		}
		if def.multi {
			m := map[uint16]any{}
			for _, r := range d.store.records(p, d.clock.Now()) {
				m[r.Path.ResourceInstance] = r.Value
			}
			return m, true
		}
		recs := d.store.records(p, d.clock.Now())
		if len(recs) != 1 {
			return nil, false
		}
		return recs[0].Value, true
	case lwm2m.DepthResourceInstance:
		v, ok := d.store.values[p]
		return v, ok
	}
	return nil, false
}

// Set changes a resource (depth 3) or resource-instance (depth 4) value,
// converting v to the resource's type, and notifies observers as their
// attributes allow. Setting the 3303 Sensor Value also tracks Min/Max
// Measured, as a real sensor does. Invalid paths or values are logged and
// ignored.
func (d *Device) Set(p lwm2m.Path, v any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setLocked(p, v, d.clock.Now()); err != nil {
		d.log.Warn("set", "path", p.String(), "err", err)
	}
}

func (d *Device) setLocked(p lwm2m.Path, v any, now time.Time) error {
	changed, err := d.storeLocked(p, v)
	if err != nil {
		return err
	}
	d.changedLocked(now, changed...)
	return nil
}

// storeLocked sets a value without notifying anyone and returns the paths
// that changed (with Min/Max Measured for the 3303 Sensor Value).
func (d *Device) storeLocked(p lwm2m.Path, v any) ([]lwm2m.Path, error) {
	def, ok := resourceDef(p.Object, p.Resource)
	switch {
	case p.Depth < lwm2m.DepthResource || !ok:
		return nil, fmt.Errorf("sim: set %s: no such resource", p)
	case !d.store.instances[lwm2m.InstancePath(p.Object, p.Instance)]:
		return nil, fmt.Errorf("sim: set %s: no such instance", p)
	case def.multi != (p.Depth == lwm2m.DepthResourceInstance):
		return nil, fmt.Errorf("sim: set %s: multiple resources are set per instance", p)
	case def.typ == lwm2m.TypeNone:
		return nil, fmt.Errorf("sim: set %s: executable resource", p)
	}
	cv, err := coerce(p, v)
	if err != nil {
		return nil, fmt.Errorf("sim: set %s: %w", p, err)
	}
	changed := []lwm2m.Path{p}
	d.store.values[p] = cv
	if p.Object == objTemperature && p.Resource == resSensorValue {
		changed = append(changed, d.trackMinMax(p.Instance, cv.(float64))...)
	}
	return changed, nil
}

// trackMinMax widens Min/Max Measured to include x and returns what changed.
func (d *Device) trackMinMax(inst uint16, x float64) []lwm2m.Path {
	var changed []lwm2m.Path
	minP := lwm2m.ResourcePath(objTemperature, inst, resMinMeasured)
	maxP := lwm2m.ResourcePath(objTemperature, inst, resMaxMeasured)
	if cur, ok := d.store.values[minP].(float64); !ok || x < cur {
		d.store.values[minP] = x
		changed = append(changed, minP)
	}
	if cur, ok := d.store.values[maxP].(float64); !ok || x > cur {
		d.store.values[maxP] = x
		changed = append(changed, maxP)
	}
	return changed
}

// Attributes returns the notification attributes written at exactly p
// (not those inherited from the instance or object).
func (d *Device) Attributes(p lwm2m.Path) lwm2m.Attributes {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attrs[p]
}
