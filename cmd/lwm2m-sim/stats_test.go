package main

import (
	"errors"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, c := range []struct {
		vals []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(1, 2, 3, 4), 0, 1 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 90, 90 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 99.5, 100 * time.Millisecond},
	} {
		if got := percentile(c.vals, c.q); got != c.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.vals, c.q, got, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	boom := errors.New("sim: register: boom")
	lat := []time.Duration{40, 10, 999, 30, 20, 5}
	for i := range lat {
		lat[i] *= time.Millisecond
	}
	// The 999ms and 5ms operations failed: they must not count.
	errs := []error{nil, nil, boom, nil, nil, boom}
	p := summarize(lat, errs, 2*time.Second)
	if p.OK != 4 || p.Errors != 2 || p.ErrorKinds[boom.Error()] != 2 {
		t.Errorf("counts %+v", p)
	}
	if p.Rate != 2 {
		t.Errorf("rate %v, want 2/s", p.Rate)
	}
	if p.P50 != 20*time.Millisecond || p.P90 != 40*time.Millisecond || p.P99 != 40*time.Millisecond || p.Max != 40*time.Millisecond {
		t.Errorf("latencies p50 %v p90 %v p99 %v max %v", p.P50, p.P90, p.P99, p.Max)
	}
	if z := summarize(nil, nil, 0); z.OK != 0 || z.Rate != 0 || z.Max != 0 {
		t.Errorf("empty %+v", z)
	}
}

func TestParseFlagsEnv(t *testing.T) {
	env := map[string]string{"DS_SIM_SERVER": "10.0.0.1:5683", "DS_SIM_N": "7", "DS_SIM_LOAD": "true", "DS_SIM_C": "3"}
	o, err := parseFlags([]string{"-c", "9"}, &discard{}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.server != "10.0.0.1:5683" || o.n != 7 || !o.load || o.c != 9 || o.endpoint != "sim-1" {
		t.Errorf("options %+v", o)
	}
	env["DS_SIM_VARY"] = "soon"
	if _, err := parseFlags(nil, &discard{}, func(k string) string { return env[k] }); err == nil {
		t.Error("bad DS_SIM_VARY accepted")
	}
	if _, err := parseFlags([]string{"-n", "0"}, &discard{}, func(string) string { return "" }); err == nil {
		t.Error("-n 0 accepted")
	}
}

type discard struct{}

func (*discard) Write(p []byte) (int, error) { return len(p), nil }
