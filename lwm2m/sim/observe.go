package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// conEvery makes every n-th notification confirmable: NON is cheap, and the
// occasional CON tells the device when the server has gone away (RFC 7641
// 4.5: an unacknowledged CON notification ends the observation).
const conEvery = 8

// conTimeout bounds the wait for the ACK of a CON notification.
const conTimeout = 60 * time.Second

// notifyQueueLen is how many notifications may wait for the sender;
// sentMIDsLen how many sent message IDs are remembered for matching RSTs.
const (
	notifyQueueLen = 64
	sentMIDsLen    = 64
)

// observation is one active Observe from the server, keyed by its token.
type observation struct {
	token  string
	path   lwm2m.Path
	format lwm2m.ContentFormat

	lastSent time.Time
	lastNum  float64 // numeric value last sent, for st/gt/lt
	hasNum   bool
	pending  bool   // a change is waiting for pmin to elapse
	gen      uint64 // bumped on every send, so stale timers do nothing

	pminTimer, pmaxTimer stopper
}

func (o *observation) stopTimers() {
	if o.pminTimer != nil {
		o.pminTimer.Stop()
		o.pminTimer = nil
	}
	if o.pmaxTimer != nil {
		o.pmaxTimer.Stop()
		o.pmaxTimer = nil
	}
}

// notification is one Notify ready to leave, queued to the sender goroutine.
type notification struct {
	token   string
	code    codes.Code
	format  lwm2m.ContentFormat
	payload []byte
	seq     uint32
	con     bool
}

// effective are the attributes that govern an observation.
type effective struct {
	pmin, pmax time.Duration
	gt, lt, st *float64
}

// effectiveLocked merges the attributes that apply to p: the Server
// object's default periods, then those written at the object, instance,
// resource and resource-instance levels, the more specific winning.
func (d *Device) effectiveLocked(p lwm2m.Path) effective {
	var a lwm2m.Attributes
	for _, r := range []uint16{resServerDefaultPmin, resServerDefaultPmax} {
		v, ok := d.store.values[lwm2m.ResourcePath(objServer, 0, r)].(int64)
		if !ok || v <= 0 || v > math.MaxUint32 {
			continue
		}
		x := uint32(v)
		if r == resServerDefaultPmin {
			a.Pmin = &x
		} else {
			a.Pmax = &x
		}
	}
	levels := make([]lwm2m.Path, 0, 4)
	for q := p; q.Depth > lwm2m.DepthRoot; q = q.Parent() {
		levels = append(levels, q)
	}
	for i := len(levels) - 1; i >= 0; i-- {
		a = a.Overlay(d.attrs[levels[i]])
	}
	e := effective{gt: a.Gt, lt: a.Lt, st: a.St}
	if a.Pmin != nil {
		e.pmin = time.Duration(*a.Pmin) * time.Second
	}
	// LwM2M: a pmax below pmin is ignored.
	if a.Pmax != nil && *a.Pmax > 0 && time.Duration(*a.Pmax)*time.Second >= e.pmin {
		e.pmax = time.Duration(*a.Pmax) * time.Second
	}
	return e
}

// thresholdMet applies st, gt and lt: any one of them that is set and met
// allows a notification (gt and lt trigger on crossing, either way).
func thresholdMet(last, cur float64, e effective) bool {
	if e.st != nil && math.Abs(cur-last) >= *e.st {
		return true
	}
	if e.gt != nil && (last > *e.gt) != (cur > *e.gt) {
		return true
	}
	if e.lt != nil && (last < *e.lt) != (cur < *e.lt) {
		return true
	}
	return false
}

// numericValueLocked returns the number at a single-value path, if any.
func (d *Device) numericValueLocked(p lwm2m.Path) (float64, bool) {
	if !isSingle(p) {
		return 0, false
	}
	return lwm2m.Numeric(d.store.values[p])
}

// observe starts an observation (GET with Observe: 0) and answers with the
// current value and an Observe option.
func (d *Device) observe(req *request) (*response, error) {
	f, err := d.readFormat(req)
	if err != nil {
		return nil, err
	}
	now := d.clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fail(codes.ServiceUnavailable, "closing")
	}
	b, err := d.encodeLocked(req.path, f, now)
	if err != nil {
		return nil, err
	}
	if old := d.obs[req.token]; old != nil {
		old.stopTimers()
	}
	o := &observation{token: req.token, path: req.path, format: f, lastSent: now}
	o.lastNum, o.hasNum = d.numericValueLocked(req.path)
	d.obs[req.token] = o
	d.armPmaxLocked(o, now)
	seq := d.nextSeqLocked()
	d.log.Info("observe", "path", req.path.String(), "format", int(f))
	return &response{code: codes.Content, format: f, payload: b, observe: &seq}, nil
}

func (d *Device) nextSeqLocked() uint32 {
	d.obsSeq = (d.obsSeq + 1) & 0xffffff // the Observe option holds 24 bits
	return d.obsSeq
}

// cancelObservation ends the observation with this token, if any.
func (d *Device) cancelObservation(token string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cancelLocked(token)
}

func (d *Device) cancelLocked(token string) {
	if o := d.obs[token]; o != nil {
		o.stopTimers()
		delete(d.obs, token)
		d.log.Info("observe cancelled", "path", o.path.String())
	}
}

// handleReset cancels the observation whose notification the server
// rejected with RST (passive cancel). RSTs carry no token, only the MID.
func (d *Device) handleReset(mid int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.sentMIDs {
		if e := &d.sentMIDs[i]; e.used && e.mid == mid {
			e.used = false
			d.cancelLocked(e.token)
			return
		}
	}
}

// changedLocked re-evaluates the observations touched by changes at paths.
func (d *Device) changedLocked(now time.Time, paths ...lwm2m.Path) {
	for _, o := range d.obs {
		if touches(o.path, paths) {
			d.evaluateLocked(o, now)
		}
	}
}

// evaluateLocked decides whether a change to what o observes is notified
// now, once pmin has elapsed, or not at all.
func (d *Device) evaluateLocked(o *observation, now time.Time) {
	e := d.effectiveLocked(o.path)
	if cur, ok := d.numericValueLocked(o.path); ok && o.hasNum && (e.gt != nil || e.lt != nil || e.st != nil) {
		if !thresholdMet(o.lastNum, cur, e) {
			return
		}
	}
	wait := o.lastSent.Add(e.pmin).Sub(now)
	if wait <= 0 {
		d.sendLocked(o, now)
		return
	}
	if o.pending {
		return // the armed pmin timer will send the latest value
	}
	o.pending = true
	gen := o.gen
	o.pminTimer = d.clock.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.obs[o.token] == o && o.gen == gen && o.pending {
			d.sendLocked(o, d.clock.Now())
		}
	})
}

// armPmaxLocked schedules the notification pmax requires after the last one.
func (d *Device) armPmaxLocked(o *observation, now time.Time) {
	if o.pmaxTimer != nil {
		o.pmaxTimer.Stop()
		o.pmaxTimer = nil
	}
	e := d.effectiveLocked(o.path)
	if e.pmax <= 0 {
		return
	}
	gen := o.gen
	o.pmaxTimer = d.clock.AfterFunc(max(0, o.lastSent.Add(e.pmax).Sub(now)), func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.obs[o.token] == o && o.gen == gen {
			d.sendLocked(o, d.clock.Now())
		}
	})
}

// attributesChangedLocked re-arms the pmax timers after a Write-Attributes.
func (d *Device) attributesChangedLocked(now time.Time) {
	for _, o := range d.obs {
		d.armPmaxLocked(o, now)
	}
}

// sendLocked queues a notification of o's current value. An error (the
// observed node was deleted) is notified once and ends the observation.
func (d *Device) sendLocked(o *observation, now time.Time) {
	if d.closed {
		return
	}
	n := d.nextNotificationLocked(o, now)
	n.con = d.notifyCnt%conEvery == 0
	d.senderOnce.Do(func() {
		d.notifyQ = make(chan notification, notifyQueueLen)
		d.wg.Add(1)
		go d.sender(d.notifyQ)
	})
	select {
	case d.notifyQ <- n:
	default:
		// Dropping is what a constrained device does; the next change or
		// pmax sends the value again.
		d.log.Warn("notification dropped: queue full", "path", o.path.String())
	}
}

// nextNotificationLocked builds the notification of o's current value with
// the next Observe sequence number and records it as sent: it restarts the
// pmin and pmax periods and the st/gt/lt reference. An error (the observed
// node was deleted) becomes an error notification and ends the observation.
func (d *Device) nextNotificationLocked(o *observation, now time.Time) notification {
	n := notification{token: o.token, code: codes.Content, format: o.format, seq: d.nextSeqLocked()}
	b, err := d.encodeLocked(o.path, o.format, now)
	if err != nil {
		var re *reqError
		n.code = codes.InternalServerError
		if errors.As(err, &re) {
			n.code = re.code
		}
		d.cancelLocked(o.token)
	} else {
		n.payload = b
	}
	d.notifyCnt++
	o.lastSent = now
	o.pending = false
	o.gen++
	if o.pminTimer != nil {
		o.pminTimer.Stop()
		o.pminTimer = nil
	}
	if v, ok := d.numericValueLocked(o.path); ok {
		o.lastNum, o.hasNum = v, true
	}
	if err == nil {
		d.armPmaxLocked(o, now)
	}
	if d.sentMIDs == nil {
		d.sentMIDs = make([]midToken, sentMIDsLen)
	}
	return n
}

// ErrNotObserved is returned by NotifyConfirmed when nothing observes the path.
var ErrNotObserved = errors.New("sim: not observed")

// NotifyConfirmed sets p to v, as Set does, and sends every observation of
// p (or of a path containing it) a confirmable notification of the new value
// at once, whatever the observation's attributes, then waits for the
// server's acknowledgements. It returns nil when each was acknowledged,
// ErrNotObserved when nothing observes p, and otherwise an error once ctx
// ends without an acknowledgement (the server may be down or restarting).
//
// Within ctx go-coap retransmits the notification as RFC 7252 says (after
// ACK_TIMEOUT, 2 s); once ctx has ended it is not sent again: like a CoAP
// server that has a newer notification to send (RFC 7641 §4.5.2), the
// device moves on, and the next call carries the newer value.
// Unlike an unacknowledged automatic notification it does not end the
// observation either, so that a device can keep notifying a server that is
// killed and restarted: the server keeps the observation across restarts.
// Mixing NotifyConfirmed with Set on the same path may reorder their
// notifications; the server then drops the older ones as stale.
func (d *Device) NotifyConfirmed(ctx context.Context, p lwm2m.Path, v any) error {
	now := d.clock.Now()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errors.New("sim: notify: device closed")
	}
	changed, err := d.storeLocked(p, v)
	if err != nil {
		d.mu.Unlock()
		return err
	}
	var ns []notification
	for _, o := range d.obs {
		if touches(o.path, changed) {
			n := d.nextNotificationLocked(o, now)
			n.con = true
			ns = append(ns, n)
		}
	}
	d.mu.Unlock()
	if len(ns) == 0 {
		return fmt.Errorf("sim: notify %s: %w", p, ErrNotObserved)
	}
	for _, n := range ns {
		if err := d.sendNotification(ctx, n); err != nil {
			return fmt.Errorf("sim: notify %s: %w", p, err)
		}
	}
	return nil
}

// touches reports whether a change at one of paths concerns an observation of op.
func touches(op lwm2m.Path, paths []lwm2m.Path) bool {
	for _, p := range paths {
		if op.Contains(p) || p.Contains(op) {
			return true
		}
	}
	return false
}

// sender writes queued notifications in order, so Observe sequence numbers
// reach the server increasing, and a CON waiting for its ACK never blocks
// Set or the CoAP handler.
func (d *Device) sender(q <-chan notification) {
	defer d.wg.Done()
	for {
		select {
		case <-d.ctx.Done():
			return
		case n := <-q:
			ctx, cancel := context.WithTimeout(d.ctx, conTimeout)
			err := d.sendNotification(ctx, n)
			cancel()
			if err != nil && d.ctx.Err() == nil {
				d.log.Warn("notify failed, cancelling observation", "err", err)
				d.cancelObservation(n.token)
			}
		}
	}
}

// sendNotification writes n; a confirmable one waits for its ACK until ctx
// ends (go-coap retransmits it meanwhile, every ACK_TIMEOUT).
func (d *Device) sendNotification(ctx context.Context, n notification) error {
	conn, err := d.getConn()
	if err != nil {
		return err
	}
	m := conn.AcquireMessage(ctx)
	defer conn.ReleaseMessage(m)
	m.SetCode(n.code)
	m.SetToken([]byte(n.token))
	m.SetObserve(n.seq)
	if n.payload != nil {
		m.SetContentFormat(message.MediaType(n.format))
		m.SetBody(bytes.NewReader(n.payload))
	}
	typ := message.NonConfirmable
	if n.con {
		typ = message.Confirmable
	}
	m.SetType(typ)
	// The MID is recorded before sending, so that an RST that overtakes
	// the bookkeeping still finds its observation.
	mid := conn.GetMessageID()
	m.SetMessageID(mid)
	d.mu.Lock()
	d.sentMIDs[d.sentNext] = midToken{mid: mid, token: n.token, used: true}
	d.sentNext = (d.sentNext + 1) % len(d.sentMIDs)
	d.mu.Unlock()
	return conn.WriteMessage(m)
}
