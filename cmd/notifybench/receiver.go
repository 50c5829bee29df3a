package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// receiver is the webhook receiver. It finds the notified values in each
// POST and, for each, the time since the device sent it: values are unique
// per run (see run.value), so a value is also the key of its send time.
type receiver struct {
	URL  string
	srv  *http.Server
	ln   net.Listener
	base time.Time // the run's clock origin, shared with the senders

	// sentAt[v] and gotAt[v] are nanoseconds since base + 1 (0: not yet),
	// for every value v a device may send.
	sentAt []atomic.Int64
	gotAt  []atomic.Int64

	posts, items   atomic.Int64
	distinct, dups atomic.Int64 // items delivered for the first time, and again
	unmatched      atomic.Int64 // items with a value no device sent
	badPosts       atomic.Int64 // bodies without a readable value
	conns          atomic.Int64 // TCP connections accepted
	last           atomic.Int64 // nanoseconds since base of the latest item
	bufs           sync.Pool
}

func newReceiver(base time.Time, maxValue int) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc := &receiver{
		URL: "http://" + ln.Addr().String() + "/hook", ln: ln, base: base,
		sentAt: make([]atomic.Int64, maxValue+1), gotAt: make([]atomic.Int64, maxValue+1),
	}
	rc.bufs.New = func() any { return new(bytes.Buffer) }
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				rc.conns.Add(1)
			}
		}}
	return rc, nil
}

// serve serves until close; ctx carries the tool's profiler labels.
func (rc *receiver) serve(ctx context.Context) {
	rc.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	_ = rc.srv.Serve(rc.ln)
}

func (rc *receiver) close() { _ = rc.srv.Close() }

// sent records that value v leaves a device now.
func (rc *receiver) sent(v int64) {
	rc.sentAt[v].Store(int64(time.Since(rc.base)) + 1)
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := rc.bufs.Get().(*bytes.Buffer)
	defer rc.bufs.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(r.Body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	now := int64(time.Since(rc.base)) + 1
	n := 0
	err := scanValues(buf.Bytes(), func(v int64) {
		n++
		if v <= 0 || v >= int64(len(rc.gotAt)) || rc.sentAt[v].Load() == 0 {
			rc.unmatched.Add(1)
			return
		}
		if rc.gotAt[v].CompareAndSwap(0, now) {
			rc.distinct.Add(1)
		} else {
			rc.dups.Add(1)
		}
	})
	if err != nil || n == 0 {
		rc.badPosts.Add(1)
	}
	rc.posts.Add(1)
	rc.items.Add(int64(n))
	maxStore(&rc.last, now)
	w.WriteHeader(http.StatusNoContent)
}

var sensorKey = []byte(`"SensorValue":`)

// scanValues calls f with the SensorValue of every item of a webhook body
// ({"Items":[{..."Value":{"SensorValue":123}}, ...]}), in order. It looks
// for the key instead of decoding the JSON, which would cost the tool more
// than the numbers are worth; the tests check it against encoding/json.
func scanValues(body []byte, f func(int64)) error {
	for {
		i := bytes.Index(body, sensorKey)
		if i < 0 {
			return nil
		}
		body = body[i+len(sensorKey):]
		for len(body) > 0 && body[0] == ' ' {
			body = body[1:]
		}
		j := 0
		for j < len(body) && (body[j] >= '0' && body[j] <= '9' || body[j] == '.' || body[j] == '-' || body[j] == 'e' || body[j] == 'E' || body[j] == '+') {
			j++
		}
		x, err := strconv.ParseFloat(string(body[:j]), 64)
		if err != nil {
			return err
		}
		if x != float64(int64(x)) {
			return errors.New("not an integer value")
		}
		f(int64(x))
		body = body[j:]
	}
}
