package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/deviceserver/deviceserver/internal/deviceserver"
)

// runConfig is one run: one server, one DeletionPolicy.
type runConfig struct {
	policy     int
	devices    int
	rate       float64
	duration   time.Duration
	con        bool
	drain      time.Duration
	idle       time.Duration
	cpuprofile string
	sync       string
	log        *slog.Logger
}

// result is what a run measured.
type result struct {
	cfg runConfig

	sent      int64         // notifications sent
	sendTime  time.Duration // first to last send
	delivered int64         // distinct notifications delivered
	span      time.Duration // first send to last delivery
	posts     int64
	conns     int64 // TCP connections the receiver accepted
	items     int64 // items received, duplicates included
	dups      int64
	bad       int64 // items that match no send, and bodies without values
	p50, p99  time.Duration
	maxLat    time.Duration

	acked, retransmits, unacked, resets int64 // CON only
	ackP50, ackP99                      time.Duration

	serverDropped, serverPending int64
	cpu                          float64 // process CPU seconds per second of the send and drain phases
	udpDrops                     int64   // datagrams the kernel dropped for full receive buffers (-1: unknown)
}

// Constants of the setup.
const (
	adminKey    = "notifybench"
	adminSecret = "notifybench-secret"
	lifetime    = 3600 // seconds: no Update during a run
	setupConc   = 32   // registrations and subscriptions in flight
)

// runOnce starts a server, the receiver and the devices, subscribes,
// sends and measures.
func runOnce(ctx context.Context, rc runConfig) (res result, err error) {
	res.cfg = rc
	dir, err := os.MkdirTemp("", "notifybench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	inst, err := deviceserver.Start(ctx, deviceserver.Config{
		HTTPAddr: "127.0.0.1:0", CoAPAddr: "127.0.0.1:0", DataDir: dir, Synchronous: rc.sync,
		AdminKey: adminKey, AdminSecret: adminSecret, SecretHashCost: bcrypt.MinCost,
		AccessTTL: time.Hour, RefreshTTL: time.Hour, RequestTimeout: 5 * time.Second,
		ExpiryInterval: time.Second, WebhookRetryMax: 3, Logger: rc.log,
	})
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := inst.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	// Everything the tool does runs under the label side=tool, so that a
	// profile separates it from the server (whose goroutines were started
	// above, without the label, and start their own).
	pprof.Do(ctx, pprof.Labels("side", "tool"), func(ctx context.Context) {
		err = measure(ctx, rc, inst, &res)
	})
	return res, err
}

// value is the notified value of a device's seq-th notification (seq ≥ 1):
// unique across the run and increasing per device.
func value(devices, idx, seq int) int64 { return int64(seq)*int64(devices) + int64(idx) }

func measure(ctx context.Context, rc runConfig, inst *deviceserver.Instance, res *result) error {
	total := int(math.Round(rc.rate * rc.duration.Seconds()))
	perDevice := (total + rc.devices - 1) / rc.devices
	base := time.Now()
	recv, err := newReceiver(base, int(value(rc.devices, rc.devices-1, perDevice)))
	if err != nil {
		return err
	}
	go recv.serve(ctx)
	defer recv.close()

	api := &apiClient{base: "http://" + inst.HTTPAddr.String(), http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}}
	// A connection the transport dialled but never used looks new to the
	// server, whose graceful Close then waits for it.
	defer api.http.CloseIdleConnections()
	if err := api.login(ctx); err != nil {
		return err
	}

	// Register every device, then subscribe to each.
	server, err := net.ResolveUDPAddr("udp", inst.CoAPAddr.String())
	if err != nil {
		return err
	}
	devs := make([]*device, rc.devices)
	for i := range devs {
		devs[i] = newDevice(i, fmt.Sprintf("nb%d", rc.policy))
	}
	defer func() {
		for _, d := range devs {
			d.close()
		}
	}()
	if err := parallel(ctx, len(devs), func(ctx context.Context, i int) error {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := devs[i].register(rctx, server, lifetime); err != nil {
			return err
		}
		go devs[i].serve()
		return nil
	}); err != nil {
		return err
	}
	if err := parallel(ctx, len(devs), func(ctx context.Context, i int) error {
		return api.subscribe(ctx, devs[i].id, recv.URL, rc.policy)
	}); err != nil {
		return err
	}
	for _, d := range devs {
		select {
		case <-d.observed:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("device %s was not observed", d.name)
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	// Send.
	if rc.cpuprofile != "" {
		f, err := os.Create(rc.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := processCPU()
	udp0, udpOK := udpRcvbufErrors()
	interval := time.Duration(float64(rc.devices) / rc.rate * float64(time.Second))
	start := time.Now().Add(10 * time.Millisecond)
	var sent, finished atomic.Int64 // notifications sent; devices done sending
	var lastSend atomic.Int64       // time of the last send, since base
	var sendErr error
	var errOnce sync.Once
	stopRetransmit := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range devs {
		n := total / rc.devices
		if i < total%rc.devices {
			n++
		}
		wg.Go(func() {
			doneSending := sync.OnceFunc(func() { finished.Add(1) })
			defer doneSending()
			nt := &notifier{d: d, con: rc.con, buf: make([]byte, 256)}
			offset := time.Duration(int64(interval) * int64(i) / int64(rc.devices))
			for seq := 1; seq <= n && ctx.Err() == nil; seq++ {
				if wait := time.Until(start.Add(offset + time.Duration(seq-1)*interval)); wait > 0 {
					time.Sleep(wait)
				}
				v := value(rc.devices, i, seq)
				recv.sent(v)
				if ok, err := nt.notify(v); err != nil || !ok {
					errOnce.Do(func() { sendErr = fmt.Errorf("device %s: notify: observed %v, %v", d.name, ok, err) })
					return
				}
				sent.Add(1)
				if rc.con {
					nt.retransmit(time.Now())
				}
			}
			maxStore(&lastSend, int64(time.Since(base)))
			doneSending()
			for rc.con && d.outstandingCount() > 0 { // retransmit until ACKed or given up
				select {
				case <-stopRetransmit:
					return
				case <-time.After(100 * time.Millisecond):
					nt.retransmit(time.Now())
				}
			}
		})
	}

	// Drain: once every device has sent its share, wait until every
	// notification sent has arrived, or for the limits.
	sendersDone := make(chan struct{})
	go func() { wg.Wait(); close(sendersDone) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var drainStart time.Time
	lastItems, lastProgress := int64(-1), time.Now()
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-tick.C:
		}
		if finished.Load() < int64(rc.devices) {
			continue
		}
		if drainStart.IsZero() {
			drainStart = time.Now()
		}
		if items := recv.items.Load(); items != lastItems {
			lastItems, lastProgress = items, time.Now()
		}
		if recv.distinct.Load() >= sent.Load() || time.Since(lastProgress) > rc.idle || time.Since(drainStart) > rc.drain {
			break
		}
	}
	close(stopRetransmit)
	<-sendersDone
	res.cpu = (processCPU() - cpu0).Seconds() / time.Since(start).Seconds()
	if udp1, ok := udpRcvbufErrors(); ok && udpOK {
		res.udpDrops = udp1 - udp0
	} else {
		res.udpDrops = -1
	}
	if rc.cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	if sendErr != nil {
		return sendErr
	}

	// Results.
	res.sent = sent.Load()
	res.sendTime = time.Duration(lastSend.Load()) - start.Sub(base)
	res.posts, res.items, res.dups, res.conns = recv.posts.Load(), recv.items.Load(), recv.dups.Load(), recv.conns.Load()
	res.bad = recv.unmatched.Load() + recv.badPosts.Load()
	res.span = time.Duration(recv.last.Load()) - start.Sub(base)
	var lat []time.Duration
	for v := range recv.gotAt {
		if g := recv.gotAt[v].Load(); g != 0 {
			lat = append(lat, time.Duration(g-recv.sentAt[v].Load()))
		}
	}
	res.delivered = int64(len(lat))
	slices.Sort(lat)
	res.p50, res.p99 = percentile(lat, 50), percentile(lat, 99)
	if len(lat) > 0 {
		res.maxLat = lat[len(lat)-1]
	}
	if rc.con {
		var acks []time.Duration
		for _, d := range devs {
			res.acked += d.acked.Load()
			res.retransmits += d.retransmits.Load()
			res.unacked += d.unacked.Load() + int64(d.outstandingCount())
			res.resets += d.resets.Load()
			d.mu.Lock()
			acks = append(acks, d.ackLatency...)
			d.mu.Unlock()
		}
		slices.Sort(acks)
		res.ackP50, res.ackP99 = percentile(acks, 50), percentile(acks, 99)
	}
	res.serverDropped, res.serverPending, err = api.deliveryTotals(ctx)
	return err
}

// parallel runs f for 0..n-1 with setupConc in flight and returns the first error.
func parallel(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(setupConc, n) {
		wg.Go(func() {
			for i := range jobs {
				if err := f(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	return context.Cause(ctx)
}

// percentile returns the nearest-rank q-th percentile of sorted (0 when empty).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q / 100 * float64(len(sorted))))
	return sorted[max(1, min(rank, len(sorted)))-1]
}

// String is the run's summary line.
func (r result) String() string {
	c := r.cfg
	typ := "NON"
	if c.con {
		typ = "CON"
	}
	per := func(n int64, d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return float64(n) / d.Seconds()
	}
	itemsPerPost := 0.0
	if r.posts > 0 {
		itemsPerPost = float64(r.items) / float64(r.posts)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "DP%d %s devices=%d rate=%.0f/s duration=%s: sent %d (%.0f/s), delivered %d (%.0f/s) in %d POSTs (%.0f/s, %.1f items/POST) on %d connections, lost %d, dup %d",
		c.policy, typ, c.devices, c.rate, c.duration, r.sent, per(r.sent, r.sendTime), r.delivered, per(r.delivered, r.span),
		r.posts, per(r.posts, r.span), itemsPerPost, r.conns, r.sent-r.delivered, r.dups)
	if r.bad > 0 {
		fmt.Fprintf(&b, ", unmatched %d", r.bad)
	}
	fmt.Fprintf(&b, ", latency p50 %s p99 %s max %s", ms(r.p50), ms(r.p99), ms(r.maxLat))
	if c.con {
		fmt.Fprintf(&b, ", ACKed %d (p50 %s p99 %s) retransmitted %d unACKed %d", r.acked, ms(r.ackP50), ms(r.ackP99), r.retransmits, r.unacked)
		if r.resets > 0 {
			fmt.Fprintf(&b, " reset %d", r.resets)
		}
	}
	fmt.Fprintf(&b, ", server dropped %d pending %d", r.serverDropped, r.serverPending)
	if r.udpDrops >= 0 {
		fmt.Fprintf(&b, ", UDP receive-buffer drops %d", r.udpDrops)
	}
	fmt.Fprintf(&b, ", cpu %.2f cores", r.cpu)
	return b.String()
}

// ms renders a duration in milliseconds with a precision that suits it.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}

// apiClient speaks to the REST API with the administrator's token.
type apiClient struct {
	base  string
	http  *http.Client
	token string
}

func (a *apiClient) login(ctx context.Context) error {
	form := url.Values{"grant_type": {"password"}, "username": {adminKey}, "password": {adminSecret}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := a.do(req, http.StatusOK, &tok); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	a.token = tok.AccessToken
	return nil
}

func (a *apiClient) do(req *http.Request, want int, out any) error {
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(body.String()))
	}
	if out != nil {
		return json.Unmarshal(body.Bytes(), out)
	}
	return nil
}

// subscribe creates the Observation subscription of a device's Sensor Value.
func (a *apiClient) subscribe(ctx context.Context, clientID, hook string, policy int) error {
	body, _ := json.Marshal(map[string]any{"SubscriptionType": "Observation", "Url": hook, "Property": "SensorValue", "DeletionPolicy": policy})
	u := a.base + "/clients/" + url.PathEscape(clientID) + "/objecttypes/3303/instances/0/subscriptions"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/vnd.oma.lwm2m.subscription+json")
	if err := a.do(req, http.StatusCreated, nil); err != nil {
		return fmt.Errorf("subscribe %s: %w", clientID, err)
	}
	return nil
}

// deliveryTotals sums Dropped and Pending over every subscription.
func (a *apiClient) deliveryTotals(ctx context.Context) (dropped, pending int64, err error) {
	for start := 0; ; {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/subscriptions?pageSize=1000&startIndex=%d", a.base, start), nil)
		if err != nil {
			return 0, 0, err
		}
		var page struct {
			PageInfo struct{ TotalCount int }
			Items    []struct {
				Delivery struct{ Dropped, Pending int64 }
			}
		}
		if err := a.do(req, http.StatusOK, &page); err != nil {
			return 0, 0, fmt.Errorf("subscriptions: %w", err)
		}
		for _, it := range page.Items {
			dropped += it.Delivery.Dropped
			pending += it.Delivery.Pending
		}
		start += len(page.Items)
		if len(page.Items) == 0 || start >= page.PageInfo.TotalCount {
			return dropped, pending, nil
		}
	}
}

// maxStore raises a to v unless it holds more.
func maxStore(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}
