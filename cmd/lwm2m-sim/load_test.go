package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/codec"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
)

// rdServer answers Register with 2.01 and De-register with 2.02, and
// records who registered from where. When reads is set, it then reads
// /3/0 from the device, as the real server does, and reports the result.
type rdServer struct {
	addr  string
	reads chan deviceRead

	mu          sync.Mutex
	endpoints   map[string]string // ep -> remote address
	deregisters int
}

// deviceRead is what rdServer read from a device's object 3.
type deviceRead struct {
	ep   string
	recs []lwm2m.Record
	err  error
}

// newRDServer starts an rdServer; reads, when not nil, receives the results
// of its reads of object 3.
func newRDServer(t *testing.T, reads chan deviceRead) *rdServer {
	t.Helper()
	rs := &rdServer{endpoints: map[string]string{}, reads: reads}
	l, err := coapnet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := udp.NewServer(options.WithMux(mux.HandlerFunc(rs.serve)), options.WithErrors(func(error) {}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
		_ = l.Close()
	})
	rs.addr = l.LocalAddr().String()
	return rs
}

func (rs *rdServer) serve(w mux.ResponseWriter, r *mux.Message) {
	path, _ := r.Options().Path()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	switch {
	case r.Code() == codes.POST && path == "/rd":
		qs, _ := r.Queries()
		var ep string
		for _, q := range qs {
			if v, ok := strings.CutPrefix(q, "ep="); ok {
				ep = v
			}
		}
		rs.endpoints[ep] = w.Conn().RemoteAddr().String()
		_ = w.SetResponse(codes.Created, message.TextPlain, nil,
			message.Option{ID: message.LocationPath, Value: []byte("rd")},
			message.Option{ID: message.LocationPath, Value: []byte(ep)})
		if rs.reads != nil {
			// From a goroutine: the device answers once it has its 2.01.
			go rs.readDevice(w.Conn(), ep)
		}
	case r.Code() == codes.DELETE && strings.HasPrefix(path, "/rd/"):
		rs.deregisters++
		_ = w.SetResponse(codes.Deleted, message.TextPlain, nil)
	default:
		_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
	}
}

func (rs *rdServer) readDevice(cc mux.Conn, ep string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cc.Get(ctx, "/3/0", message.Option{ID: message.Accept, Value: []byte{byte(lwm2m.FormatSenMLJSON)}})
	if err != nil {
		rs.reads <- deviceRead{ep: ep, err: err}
		return
	}
	defer cc.ReleaseMessage(resp)
	body, err := resp.ReadBody()
	if err == nil && resp.Code() != codes.Content {
		err = fmt.Errorf("answer %v", resp.Code())
	}
	var recs []lwm2m.Record
	if err == nil {
		recs, err = codec.Decode(lwm2m.FormatSenMLJSON, lwm2m.InstancePath(3, 0), body, nil)
	}
	rs.reads <- deviceRead{ep: ep, recs: recs, err: err}
}

// TestLoadAnswersDeviceReads: the server's read of object 3 after each
// registration is answered, with the endpoint name as serial number.
func TestLoadAnswersDeviceReads(t *testing.T) {
	const n = 20
	rs := newRDServer(t, make(chan deviceRead, n))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan loadResult, 1)
	registered := make(chan struct{})
	go func() {
		// Held registered until every read is in and every device has its
		// answer (a read may reach a device before its 2.01), then cancelled.
		done <- runLoad(ctx, loadConfig{Server: rs.addr, Prefix: "read", N: n, Concurrency: 5,
			Lifetime: 60, Version: "1.1", Timeout: 10 * time.Second, Hold: time.Hour,
			Registered: func() { close(registered) }})
	}()
	deadline := time.After(30 * time.Second)
	for range n {
		select {
		case r := <-rs.reads:
			if r.err != nil {
				t.Errorf("read of %s: %v", r.ep, r.err)
				continue
			}
			if len(r.recs) != 4 || r.recs[2].Path != lwm2m.ResourcePath(3, 0, 2) || r.recs[2].Value != r.ep {
				t.Errorf("read of %s: %+v", r.ep, r.recs)
			}
		case <-deadline:
			t.Fatal("reads missing after 30s")
		}
	}
	select {
	case <-registered:
	case <-deadline:
		t.Fatal("register phase not over after 30s")
	}
	cancel()
	if res := <-done; res.Register.OK != n {
		t.Fatalf("register %+v", res.Register)
	}
}

func TestLoadSmall(t *testing.T) {
	rs := newRDServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := runLoad(ctx, loadConfig{
		Server: rs.addr, Prefix: "load", N: 50, Concurrency: 10,
		Lifetime: 60, Version: "1.1", Timeout: 10 * time.Second, Deregister: true,
	})
	if res.Register.OK != 50 || res.Register.Errors != 0 {
		t.Fatalf("register %+v", res.Register)
	}
	if res.Deregister == nil || res.Deregister.OK != 50 || res.Deregister.Errors != 0 {
		t.Fatalf("deregister %+v", res.Deregister)
	}
	if p := res.Register; p.P50 <= 0 || p.P50 > p.P90 || p.P90 > p.P99 || p.P99 > p.Max || p.Rate <= 0 {
		t.Errorf("latencies %+v", p)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	addrs := map[string]bool{}
	for i := 1; i <= 50; i++ {
		ep := fmt.Sprintf("load-%05d", i)
		a, ok := rs.endpoints[ep]
		if !ok {
			t.Errorf("%s never registered", ep)
		}
		addrs[a] = true
	}
	if len(addrs) != 50 {
		t.Errorf("%d distinct source addresses, want one socket per device", len(addrs))
	}
	if rs.deregisters != 50 {
		t.Errorf("%d de-registers", rs.deregisters)
	}

	var text bytes.Buffer
	writeText(&text, res)
	for _, want := range []string{"50 devices, concurrency 10", "register    ok 50/50  errors 0", "deregister  ok 50/50", "p99"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text summary lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := writeJSON(&js, res); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Register struct {
			OK    int     `json:"ok"`
			P50Ms float64 `json:"p50Ms"`
		} `json:"register"`
	}
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil || decoded.Register.OK != 50 || decoded.Register.P50Ms <= 0 {
		t.Errorf("json summary %s (%v)", js.String(), err)
	}
}

func TestLoadModeCLI(t *testing.T) {
	rs := newRDServer(t, nil)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-load", "-n", "3", "-c", "2", "-server", rs.addr, "-json", "-endpoint", "x"},
		&out, &errOut, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), `"ok": 3`) || !strings.Contains(out.String(), `"deregister"`) {
		t.Errorf("json output %s", out.String())
	}
}

func TestLoadModeCountsErrors(t *testing.T) {
	// A socket that never answers: every registration times out.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-load", "-n", "3", "-c", "3", "-server", pc.LocalAddr().String(), "-timeout", "300ms"},
		&out, &errOut, func(string) string { return "" })
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out.String(), "ok 0/3  errors 3") || !strings.Contains(out.String(), "sim: register: ") {
		t.Errorf("summary:\n%s", out.String())
	}
}

func TestRunModeRegistersAndDeregisters(t *testing.T) {
	rs := newRDServer(t, nil)
	o, err := parseFlags([]string{"-n", "2", "-endpoint", "dev", "-vary", "10ms"}, &discard{},
		func(k string) string { return map[string]string{"DS_SIM_SERVER": rs.addr}[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Interrupt as soon as both devices are registered.
	err = runDevices(ctx, o, slog.New(slog.DiscardHandler), cancel)
	if err != nil {
		t.Fatal(err)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if _, ok := rs.endpoints["dev-1"]; !ok {
		t.Error("dev-1 did not register")
	}
	if _, ok := rs.endpoints["dev-2"]; !ok {
		t.Error("dev-2 did not register")
	}
	if rs.deregisters != 2 {
		t.Errorf("%d de-registers, want 2", rs.deregisters)
	}
}
