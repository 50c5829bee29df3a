package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/deviceserver/deviceserver/storage"
)

// delivery is one notification item for one subscription.
type delivery struct {
	sub  storage.Subscription
	body []byte    // the item, JSON
	at   time.Time // lifecycle notifications waiting for the device's identity: when the event happened
}

// memItem is a DeletionPolicy 0 notification waiting in memory.
type memItem struct {
	deliveryID string
	body       []byte
}

// worker delivers one subscription's notifications in order. It exists
// while there is work and exits when both queues are empty.
type worker struct {
	id     string
	ctx    context.Context // ends when the subscription is deleted or the engine closes
	cancel context.CancelFunc

	// Guarded by Engine.mu:
	mem           []memItem          // DeletionPolicy 0 queue
	storeKick     bool               // the outbox may hold entries
	attemptCancel context.CancelFunc // cancels the request in flight, see retarget

	// Owned by the worker's goroutine: the outbox entry, not in a batch,
	// that may already have been sent alone (see nextBatch); resumed: the
	// worker was started for entries left by an earlier run, whose head may
	// have been sent alone before the stop.
	single  int64
	resumed bool
}

// Batching: a worker that finds several notifications waiting sends up to
// maxBatch of them (and about maxBatchBytes) in one request, in order.
const (
	maxBatch      = 100
	maxBatchBytes = 256 << 10
	// maxPerDestination bounds the concurrent requests to one host:port,
	// so that many subscriptions to a slow receiver cannot take every
	// connection, and the receiver is not flooded.
	maxPerDestination = 8
)

// dropCount holds a subscription's queue-full drops not yet in the store.
// The event that drops a notification only counts it here, so that a
// subscription whose receiver cannot keep up does not make every event wait
// for a store write; the next statistics write of the subscription's worker
// carries the count (see addStats).
type dropCount struct {
	// write is held across taking pending and writing it to the store, and
	// by Stats across reading the store and pending, so that Stats counts
	// every drop once.
	write   sync.Mutex
	pending storage.DeliveryStats // guarded by Engine.mu
}

// dispatch hands deliveries to their subscriptions' workers. DeletionPolicy
// 1 items are written to the outbox first, in one transaction, so they are
// durable when dispatch returns.
func (e *Engine) dispatch(ctx context.Context, ds []delivery) {
	if len(ds) == 0 {
		return
	}
	now := e.now().UTC()
	var durable []storage.Notification
	for _, d := range ds {
		if d.sub.DeletionPolicy == 1 {
			durable = append(durable, storage.Notification{SubscriptionID: d.sub.ID, DeliveryID: newID(), Body: d.body, CreatedAt: now})
			continue
		}
		e.queue(ctx, d)
	}
	if len(durable) == 0 {
		return
	}
	if err := e.store.Enqueue(context.WithoutCancel(ctx), durable); err != nil {
		e.log.Error("subscriptions: storing notifications", "count", len(durable), "error", err)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return // Start delivers them after the restart
	}
	for _, n := range durable {
		e.workerLocked(n.SubscriptionID).storeKick = true
	}
}

func (e *Engine) queue(ctx context.Context, d delivery) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	w := e.workerLocked(d.sub.ID)
	if len(w.mem) >= e.queueSize {
		dc := e.drops[d.sub.ID]
		if dc == nil {
			dc = &dropCount{}
			e.drops[d.sub.ID] = dc
		}
		dc.pending.Dropped++
		dc.pending.LastError = "delivery queue full"
		e.mu.Unlock()
		e.log.Warn("subscriptions: delivery queue full, dropping a notification", "subscription", d.sub.ID)
		e.report(d.sub.ID, false)
		return
	}
	w.mem = append(w.mem, memItem{deliveryID: newID(), body: d.body})
	e.mu.Unlock()
}

// workerLocked returns the subscription's worker, starting it. Called with
// e.mu held and the engine open.
func (e *Engine) workerLocked(id string) *worker { return e.startWorkerLocked(id, false) }

// startWorkerLocked is workerLocked for Start, which says whether the
// outbox holds entries of an earlier run (see worker.resumed).
func (e *Engine) startWorkerLocked(id string, resumed bool) *worker {
	if w := e.workers[id]; w != nil {
		return w
	}
	ctx, cancel := context.WithCancel(e.root)
	w := &worker{id: id, ctx: ctx, cancel: cancel, resumed: resumed}
	e.workers[id] = w
	e.wg.Add(1)
	go e.run(w)
	return w
}

// stopWorker ends a deleted subscription's deliveries.
func (e *Engine) stopWorker(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if w := e.workers[id]; w != nil {
		w.cancel()
		delete(e.workers, id)
	}
}

// retarget makes a subscription whose URL, secret, format or policy changed
// use the new settings at once: a request being retried against the old
// settings is abandoned and sent again, and the outbox is looked at again.
func (e *Engine) retarget(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if w := e.workers[id]; w != nil {
		w.storeKick = true
		if w.attemptCancel != nil {
			w.attemptCancel()
		}
	}
}

func (e *Engine) run(w *worker) {
	defer e.wg.Done()
	defer w.cancel()
	for {
		e.mu.Lock()
		switch {
		case w.ctx.Err() != nil:
		case len(w.mem) > 0:
			n, size := 0, 0
			for n < len(w.mem) && n < maxBatch && (n == 0 || size+len(w.mem[n].body) <= maxBatchBytes) {
				size += len(w.mem[n].body)
				n++
			}
			batch := slices.Clone(w.mem[:n])
			clear(w.mem[:n])
			w.mem = w.mem[n:]
			if len(w.mem) == 0 {
				w.mem = nil
			}
			e.mu.Unlock()
			e.deliverMem(w, batch)
			continue
		case w.storeKick:
			w.storeKick = false
			e.mu.Unlock()
			e.drainStore(w)
			continue
		}
		if e.workers[w.id] == w {
			delete(e.workers, w.id)
		}
		e.mu.Unlock()
		e.flushDrops(w)
		return
	}
}

// flushDrops records the drops counted since the worker's last statistics
// write, and forgets the count once nothing is pending, so that the engine
// does not keep an entry for every subscription that ever overflowed.
func (e *Engine) flushDrops(w *worker) {
	e.mu.Lock()
	dc := e.drops[w.id]
	e.mu.Unlock()
	if dc == nil {
		return
	}
	e.addStats(w.ctx, w.id, storage.DeliveryStats{})
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.drops[w.id] == dc && dc.pending.Dropped == 0 && dc.pending.LastError == "" {
		delete(e.drops, w.id)
	}
}

// deliverMem delivers a batch of DeletionPolicy 0 notifications with a
// bounded retry, then counts them delivered or dropped. The batch keeps
// its first notification's delivery ID across retries.
func (e *Engine) deliverMem(w *worker, batch []memItem) {
	bodies := make([][]byte, len(batch))
	for i, it := range batch {
		bodies[i] = it.body
	}
	n := int64(len(batch))
	for {
		sub, err := e.subscription(w.ctx, w.id)
		if errors.Is(err, storage.ErrNotFound) || w.ctx.Err() != nil {
			return
		}
		if err != nil {
			e.log.Error("subscriptions: reading subscription", "subscription", w.id, "error", err)
			e.addStats(w.ctx, w.id, storage.DeliveryStats{Dropped: n, LastError: err.Error()})
			return
		}
		err = e.post(w, sub, batch[0].deliveryID, bodies, false)
		switch {
		case err == nil:
			e.addStats(w.ctx, w.id, storage.DeliveryStats{Delivered: n, LastSuccess: e.now().UTC()})
			e.reportN(w.id, true, len(batch))
			return
		case errors.Is(err, errRetarget):
			continue
		case w.ctx.Err() != nil:
			return
		}
		e.log.Warn("subscriptions: webhook failed, notifications dropped", "subscription", w.id, "count", n, "error", err)
		e.addStats(w.ctx, w.id, storage.DeliveryStats{Dropped: n, LastError: err.Error()})
		e.reportN(w.id, false, len(batch))
		return
	}
}

func (e *Engine) reportN(id string, delivered bool, n int) {
	for range n {
		e.report(id, delivered)
	}
}

func (e *Engine) report(id string, delivered bool) {
	if e.outcome != nil {
		e.outcome(id, delivered)
	}
}

// drainStore delivers the subscription's outbox in Seq order, each batch
// until a 2xx, acknowledging as it goes.
func (e *Engine) drainStore(w *worker) {
	for w.ctx.Err() == nil {
		ns, err := e.store.Pending(w.ctx, w.id, maxBatch)
		if err != nil {
			e.log.Error("subscriptions: reading outbox", "subscription", w.id, "error", err)
			sleep(w.ctx, e.durableWaitMax)
			continue
		}
		if len(ns) == 0 {
			return
		}
		batch, id, err := e.nextBatch(w, ns)
		if err != nil {
			e.log.Error("subscriptions: marking a batch", "subscription", w.id, "error", err)
			sleep(w.ctx, e.durableWaitMax)
			continue
		}
		res, err := e.deliverDurable(w, id, batch)
		if res == stopped {
			return
		}
		last := batch[len(batch)-1].Seq
		if err := e.store.Ack(w.ctx, w.id, last); err != nil {
			// Sent again after the wait: at-least-once.
			e.log.Error("subscriptions: acknowledging outbox entries", "subscription", w.id, "error", err)
			sleep(w.ctx, e.durableWaitMax)
			continue
		}
		w.single = 0
		n := int64(len(batch))
		if res == dropped {
			e.log.Error("subscriptions: undeliverable notifications dropped", "subscription", w.id, "count", n, "error", err)
			e.addStats(w.ctx, w.id, storage.DeliveryStats{Dropped: n, LastError: err.Error()})
			e.reportN(w.id, false, len(batch))
			continue
		}
		e.addStats(w.ctx, w.id, storage.DeliveryStats{Delivered: n, LastSuccess: e.now().UTC()})
		e.reportN(w.id, true, len(batch))
	}
}

// nextBatch picks the outbox entries of the next request and its delivery
// ID, so that a receiver only ever sees a notification again under the
// same X-Delivery-ID:
//   - entries already marked with a batch are sent again exactly as that batch;
//   - an unmarked entry that may have been sent alone (it was, or the worker
//     resumed after a stop and it is the head) is sent alone, under its own ID;
//   - otherwise several waiting entries are first marked as a batch in the
//     store (durably, so that a restart sends the same batch), then sent.
func (e *Engine) nextBatch(w *worker, ns []storage.Notification) ([]storage.Notification, string, error) {
	head := ns[0]
	if head.BatchID != "" {
		n := 1
		for n < len(ns) && ns[n].BatchID == head.BatchID {
			n++
		}
		return ns[:n], head.BatchID, nil
	}
	if w.resumed {
		w.resumed = false
		w.single = head.Seq
	}
	// An entry that is not valid JSON (it can only fail) goes alone, so
	// that it does not take good ones down with it.
	n, size := 1, len(head.Body)
	for n < len(ns) && ns[n].BatchID == "" && size+len(ns[n].Body) <= maxBatchBytes && json.Valid(ns[n].Body) && (n > 1 || json.Valid(head.Body)) {
		size += len(ns[n].Body)
		n++
	}
	if n == 1 || w.single == head.Seq {
		w.single = head.Seq
		return ns[:1], head.DeliveryID, nil
	}
	id := newID()
	if err := e.store.MarkBatch(w.ctx, w.id, ns[n-1].Seq, id); err != nil {
		return nil, "", err
	}
	return ns[:n], id, nil
}

// result is how a durable delivery ended.
type result int

const (
	delivered result = iota
	dropped          // can never be sent (permanentError)
	stopped          // subscription deleted or engine closing
)

// permanentError is a delivery failure that no retry can cure.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// deliverDurable sends one batch of outbox entries until it is accepted.
func (e *Engine) deliverDurable(w *worker, deliveryID string, batch []storage.Notification) (result, error) {
	bodies := make([][]byte, len(batch))
	for i, n := range batch {
		bodies[i] = n.Body
	}
	for w.ctx.Err() == nil {
		sub, err := e.subscription(w.ctx, w.id)
		if errors.Is(err, storage.ErrNotFound) {
			// Deleted while these entries were being written: nothing will read them.
			_ = e.store.Ack(w.ctx, w.id, math.MaxInt64)
			return stopped, err
		}
		if err != nil {
			e.log.Error("subscriptions: reading subscription", "subscription", w.id, "error", err)
			sleep(w.ctx, e.durableWaitMax)
			continue
		}
		err = e.post(w, sub, deliveryID, bodies, true)
		var perm permanentError
		switch {
		case err == nil:
			return delivered, nil
		case errors.As(err, &perm):
			return dropped, err
		case !errors.Is(err, errRetarget) && w.ctx.Err() == nil:
			sleep(w.ctx, e.durableWaitMax)
		}
	}
	return stopped, w.ctx.Err()
}

var errRetarget = errors.New("subscription changed during delivery")

// post sends one webhook request through go-retryablehttp. Durable
// requests retry until accepted, with the longer backoff cap, and record
// each failure as the subscription's LastError so that it is visible while
// retrying.
func (e *Engine) post(w *worker, sub storage.Subscription, deliveryID string, items [][]byte, durable bool) error {
	f, _ := notificationFormat(sub.AcceptContentType) // validated
	body, ctype, err := encodeBody(f, items)
	if err != nil {
		return permanentError{err}
	}
	actx, acancel := context.WithCancel(w.ctx)
	e.mu.Lock()
	w.attemptCancel = acancel
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		w.attemptCancel = nil
		e.mu.Unlock()
		acancel()
	}()

	req, err := retryablehttp.NewRequestWithContext(actx, http.MethodPost, sub.URL, body)
	if err != nil {
		return permanentError{err}
	}
	for k, v := range sub.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "deviceserver-webhook")
	req.Header.Set(HeaderDeliveryID, deliveryID)
	if sub.Secret != "" {
		req.Header.Set(HeaderSignature, sign(sub.Secret, body))
	}

	var lastErr, recorded string
	failed := func(msg string) {
		lastErr = msg
		if durable && msg != recorded {
			recorded = msg
			e.addStats(w.ctx, w.id, storage.DeliveryStats{LastError: msg})
		}
	}
	c := &retryablehttp.Client{
		HTTPClient:   e.http,
		Logger:       leveledLogger{e.log.With("subscription", w.id)},
		RetryWaitMin: e.waitMin,
		RetryWaitMax: e.waitMax,
		RetryMax:     e.retryMax,
		CheckRetry: func(ctx context.Context, resp *http.Response, err error) (bool, error) {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			if err != nil {
				failed(err.Error())
				return true, nil
			}
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				return false, nil
			}
			failed("webhook answered " + resp.Status)
			return true, nil
		},
		Backoff: backoff,
	}
	if durable {
		c.RetryWaitMax = e.durableWaitMax
		c.RetryMax = math.MaxInt32
	}
	resp, err := c.Do(req)
	if err == nil {
		drain(resp.Body)
		return nil
	}
	if w.ctx.Err() == nil && actx.Err() != nil {
		return errRetarget
	}
	if lastErr != "" {
		return errors.New(lastErr)
	}
	return err
}

// backoff is capped exponential backoff with jitter (between half and all
// of the exponential value), honouring a Retry-After within the cap.
func backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			return min(time.Duration(s)*time.Second, hi)
		}
	}
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits for d (at most 5 s) or until ctx ends; it paces retries
// after store errors.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(min(d, 5*time.Second))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// addStats adds d, and the drops counted by queue since the last call, to
// the subscription's statistics. A LastError in d is newer than the drops'.
func (e *Engine) addStats(ctx context.Context, id string, d storage.DeliveryStats) {
	e.mu.Lock()
	dc := e.drops[id]
	e.mu.Unlock()
	if dc != nil {
		dc.write.Lock()
		defer dc.write.Unlock()
		e.mu.Lock()
		p := dc.pending
		dc.pending = storage.DeliveryStats{}
		e.mu.Unlock()
		d.Dropped += p.Dropped
		if d.LastError == "" {
			d.LastError = p.LastError
		}
	}
	if d.Delivered == 0 && d.Dropped == 0 && d.LastError == "" && d.LastSuccess.IsZero() {
		return
	}
	err := e.store.AddDeliveryStats(context.WithoutCancel(ctx), id, d)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		e.log.Error("subscriptions: recording delivery statistics", "subscription", id, "error", err)
	}
}

// leveledLogger adapts slog to go-retryablehttp, at debug level: the
// engine logs the outcome of each delivery itself.
type leveledLogger struct{ l *slog.Logger }

func (a leveledLogger) Error(msg string, kv ...any) { a.l.Debug("webhook: "+msg, kv...) }
func (a leveledLogger) Info(msg string, kv ...any)  { a.l.Debug("webhook: "+msg, kv...) }
func (a leveledLogger) Debug(msg string, kv ...any) { a.l.Debug("webhook: "+msg, kv...) }
func (a leveledLogger) Warn(msg string, kv ...any)  { a.l.Debug("webhook: "+msg, kv...) }

// limiter is the webhook transport: at most maxPerDestination requests in
// flight per host:port. A request holds its slot until its response body
// is closed.
type limiter struct {
	base http.RoundTripper
	mu   sync.Mutex
	sems map[string]chan struct{}
}

func newLimiter(base http.RoundTripper) *limiter {
	if base == nil {
		base = http.DefaultTransport
	}
	return &limiter{base: base, sems: make(map[string]chan struct{})}
}

// RoundTrip waits for a slot of the request's destination, then sends it.
func (l *limiter) RoundTrip(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	sem := l.sems[req.URL.Host]
	if sem == nil {
		sem = make(chan struct{}, maxPerDestination)
		l.sems[req.URL.Host] = sem
	}
	l.mu.Unlock()
	select {
	case sem <- struct{}{}:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	resp, err := l.base.RoundTrip(req)
	if err != nil {
		<-sem
		return nil, err
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: sync.OnceFunc(func() { <-sem })}
	return resp, nil
}

type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Close() error {
	defer b.release()
	return b.ReadCloser.Close()
}
