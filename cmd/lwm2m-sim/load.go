package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"time"
)

// loadConfig describes one load run.
type loadConfig struct {
	Server      string
	Prefix      string // endpoints are Prefix-00001 ...
	N           int
	Concurrency int
	Lifetime    uint32
	Version     string
	Timeout     time.Duration // bound on each request, retransmissions included
	AckTimeout  time.Duration // RFC 7252 ACK_TIMEOUT; 0 means its default, 2s
	Deregister  bool
	Hold        time.Duration
	// Registered, when set, is called once the register phase has ended
	// (every device answered or failed), before Hold.
	Registered func()
}

// phase is the outcome of registering (or de-registering) every device.
type phase struct {
	OK     int
	Errors int
	Total  time.Duration // wall time of the whole phase
	Rate   float64       // successes per second of wall time
	P50    time.Duration
	P90    time.Duration
	P99    time.Duration
	Max    time.Duration
	// ErrorKinds counts errors by message, for the report.
	ErrorKinds map[string]int
}

// loadResult is the whole report.
type loadResult struct {
	Server      string
	Devices     int
	Concurrency int
	FDLimit     uint64
	Register    phase
	Deregister  *phase // nil when not de-registering
}

// runLoad registers cfg.N lean devices, each with its own socket, with at
// most cfg.Concurrency registrations in flight, then optionally
// de-registers them, measuring both. Every socket stays open until the end,
// so that all cfg.N devices exist at once, as they would in the field.
func runLoad(ctx context.Context, cfg loadConfig) loadResult {
	res := loadResult{Server: cfg.Server, Devices: cfg.N, Concurrency: cfg.Concurrency}
	xc := exchangeConfig{Timeout: cfg.Timeout, AckTimeout: cfg.AckTimeout}
	if xc.Timeout <= 0 {
		xc.Timeout = 30 * time.Second
	}
	// Resolved once: a lookup per device would be load on the resolver,
	// not on the server.
	server, resolveErr := net.ResolveUDPAddr("udp", cfg.Server)
	devices := make([]leanDevice, cfg.N)
	defer func() {
		for i := range devices {
			devices[i].close()
		}
	}()

	res.Register = measure(ctx, cfg.N, cfg.Concurrency, func(ctx context.Context, s *scratch, i int) error {
		if resolveErr != nil {
			return fmt.Errorf("sim: register: %w", resolveErr)
		}
		d := &devices[i]
		if err := d.dial(server); err != nil {
			return fmt.Errorf("sim: register: %w", err)
		}
		if err := d.register(ctx, s, xc, fmt.Sprintf("%s-%05d", cfg.Prefix, i+1), cfg.Lifetime, cfg.Version); err != nil {
			return err
		}
		// The server reads object 3 right after the registration.
		d.serve()
		return nil
	})
	if cfg.Registered != nil {
		cfg.Registered()
	}
	if cfg.Hold > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Hold):
		}
	}
	if cfg.Deregister && ctx.Err() == nil {
		var idx []int
		for i := range devices {
			if devices[i].loc != nil {
				// Stopped before the phase, so that it is not measured;
				// a request meanwhile is answered in the exchange.
				devices[i].stopServing()
				idx = append(idx, i)
			}
		}
		p := measure(ctx, len(idx), cfg.Concurrency, func(ctx context.Context, s *scratch, j int) error {
			return devices[idx[j]].deregister(ctx, s, xc)
		})
		res.Deregister = &p
	}
	return res
}

// measure runs op for 0..n-1 with c workers, each with its own scratch,
// and summarises the latencies.
func measure(ctx context.Context, n, c int, op func(ctx context.Context, s *scratch, i int) error) phase {
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(c, max(n, 1)) {
		wg.Go(func() {
			s := newScratch()
			for i := range jobs {
				t0 := time.Now()
				errs[i] = op(ctx, s, i)
				lat[i] = time.Since(t0)
			}
		})
	}
	sent := 0
feed:
	for ; sent < n; sent++ {
		select {
		case jobs <- sent:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	total := time.Since(start)
	for i := sent; i < n; i++ {
		errs[i] = fmt.Errorf("not attempted: %w", ctx.Err())
	}
	return summarize(lat, errs, total)
}

// summarize turns per-operation latencies and errors (nil for success)
// into a phase; only successful operations count for the latencies.
func summarize(lat []time.Duration, errs []error, total time.Duration) phase {
	var ok []time.Duration
	p := phase{Total: total}
	for i, err := range errs {
		if err != nil {
			p.Errors++
			if p.ErrorKinds == nil {
				p.ErrorKinds = map[string]int{}
			}
			p.ErrorKinds[err.Error()]++
			continue
		}
		ok = append(ok, lat[i])
	}
	p.OK = len(ok)
	if total > 0 {
		p.Rate = float64(p.OK) / total.Seconds()
	}
	slices.Sort(ok)
	p.P50 = percentile(ok, 50)
	p.P90 = percentile(ok, 90)
	p.P99 = percentile(ok, 99)
	if len(ok) > 0 {
		p.Max = ok[len(ok)-1]
	}
	return p
}

// percentile returns the nearest-rank q-th percentile of sorted, or 0 for
// an empty slice: the smallest value with at least q% of values at or below it.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
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

// writeText prints the human-readable summary block.
func writeText(w io.Writer, r loadResult) {
	fmt.Fprintf(w, "lwm2m-sim load: %d devices, concurrency %d, server %s", r.Devices, r.Concurrency, r.Server)
	if r.FDLimit > 0 {
		fmt.Fprintf(w, ", fd limit %d", r.FDLimit)
	}
	fmt.Fprintln(w)
	line := func(name string, total int, p phase) {
		fmt.Fprintf(w, "  %-11s ok %d/%d  errors %d  total %.3fs  rate %.1f/s\n",
			name, p.OK, total, p.Errors, p.Total.Seconds(), p.Rate)
		fmt.Fprintf(w, "  %-11s latency p50 %s  p90 %s  p99 %s  max %s\n", "", ms(p.P50), ms(p.P90), ms(p.P99), ms(p.Max))
		kinds := make([]string, 0, len(p.ErrorKinds))
		for k := range p.ErrorKinds {
			kinds = append(kinds, k)
		}
		slices.SortFunc(kinds, func(a, b string) int { return p.ErrorKinds[b] - p.ErrorKinds[a] })
		for i, k := range kinds {
			if i == 5 {
				fmt.Fprintf(w, "  %-11s ... %d more kinds of error\n", "", len(kinds)-5)
				break
			}
			fmt.Fprintf(w, "  %-11s %6d × %s\n", "", p.ErrorKinds[k], k)
		}
	}
	line("register", r.Devices, r.Register)
	if r.Deregister != nil {
		line("deregister", r.Register.OK, *r.Deregister)
	}
}

// jsonPhase is phase with durations in milliseconds.
type jsonPhase struct {
	OK         int            `json:"ok"`
	Errors     int            `json:"errors"`
	TotalMs    float64        `json:"totalMs"`
	Rate       float64        `json:"ratePerSecond"`
	P50Ms      float64        `json:"p50Ms"`
	P90Ms      float64        `json:"p90Ms"`
	P99Ms      float64        `json:"p99Ms"`
	MaxMs      float64        `json:"maxMs"`
	ErrorKinds map[string]int `json:"errorKinds,omitempty"`
}

func toJSONPhase(p phase) *jsonPhase {
	f := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return &jsonPhase{OK: p.OK, Errors: p.Errors, TotalMs: f(p.Total), Rate: p.Rate,
		P50Ms: f(p.P50), P90Ms: f(p.P90), P99Ms: f(p.P99), MaxMs: f(p.Max), ErrorKinds: p.ErrorKinds}
}

// writeJSON prints the summary as one JSON object.
func writeJSON(w io.Writer, r loadResult) error {
	out := struct {
		Server      string     `json:"server"`
		Devices     int        `json:"devices"`
		Concurrency int        `json:"concurrency"`
		FDLimit     uint64     `json:"fdLimit,omitempty"`
		Register    *jsonPhase `json:"register"`
		Deregister  *jsonPhase `json:"deregister,omitempty"`
	}{Server: r.Server, Devices: r.Devices, Concurrency: r.Concurrency, FDLimit: r.FDLimit, Register: toJSONPhase(r.Register)}
	if r.Deregister != nil {
		out.Deregister = toJSONPhase(*r.Deregister)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}
