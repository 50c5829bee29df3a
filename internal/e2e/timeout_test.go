package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/deviceserver/deviceserver/internal/deviceserver"
	"github.com/deviceserver/deviceserver/internal/testserver"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

const shortRequestTimeout = time.Second

// registerSilentDevice registers endpoint ep with a raw CoAP client that then
// never answers the server's requests (go-coap only ACKs them empty), as a
// device that went away without de-registering does.
func registerSilentDevice(t *testing.T, server, ep string) {
	t.Helper()
	cc, err := udp.Dial(server,
		// A handler that sets no response: the server's requests are never answered.
		options.WithHandlerFunc(func(*responsewriter.ResponseWriter[*udpclient.Conn], *pool.Message) {}),
		options.WithErrors(func(error) {}),
	)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var opts []message.Option
	for _, q := range []string{"ep=" + ep, "lt=60", "lwm2m=1.1"} {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	resp, err := cc.Post(ctx, "/rd", message.AppLinkFormat, strings.NewReader("</3/0>"), opts...)
	if err != nil {
		t.Fatalf("register %s: %v", ep, err)
	}
	defer cc.ReleaseMessage(resp)
	if resp.Code() != codes.Created {
		t.Fatalf("register %s: %v", ep, resp.Code())
	}
}

// restResult is the outcome of a concurrent REST request.
type restResult struct {
	name    string
	status  int
	body    string
	elapsed time.Duration
	err     error
}

// getInBackground sends a GET in the background (t.Fatal is not allowed there)
// and reports on ch.
func getInBackground(name, href, token string, ch chan<- restResult) {
	go func() {
		start := time.Now()
		req, err := http.NewRequest(http.MethodGet, href, nil)
		if err != nil {
			ch <- restResult{name: name, err: err}
			return
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- restResult{name: name, err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- restResult{name: name, status: resp.StatusCode, body: string(b), elapsed: time.Since(start)}
	}()
}

// objectInstancesHref follows the links from GET / to the client with endpoint
// ep and returns the instances link of its object.
func objectInstancesHref(t *testing.T, api testserver.Client, root map[string]any, ep, object string) string {
	t.Helper()
	clients := api.Get(testserver.Link(t, root, "clients") + "?name=" + ep).Body
	client := find(t, clients, "Name", ep)
	types := api.Get(testserver.Link(t, client, "objecttypes")).Body
	return testserver.Link(t, find(t, types, "ObjectTypeID", object), "instances")
}

func TestSilentDeviceTimesOutAlone(t *testing.T) {
	srv := testserver.Start(t, func(c *deviceserver.Config) { c.RequestTimeout = shortRequestTimeout })
	api := testserver.Client{T: t, Token: srv.Token(t)}
	root := api.Get(srv.URL + "/").Body

	startDevice(t, srv, sim.Config{Endpoint: "e2e-normal", Lifetime: 60, Manufacturer: "Acme", Light: true})
	registerSilentDevice(t, srv.CoAPAddr.String(), "silent")

	normalInstances := objectInstancesHref(t, api, root, "e2e-normal", "3")
	normal := testserver.Link(t, find(t, api.Get(normalInstances).Body, "InstanceID", "0"), "self")
	// The silent device cannot be read, so its instance is addressed from
	// its instances link.
	silent := objectInstancesHref(t, api, root, "silent", "3") + "/0"

	results := make(chan restResult, 2)
	getInBackground("silent", silent, api.Token, results)
	getInBackground("normal", normal, api.Token, results)

	deadline := time.After(wait)
	var got []restResult
	for len(got) < 2 {
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatalf("GET %s device: %v", r.name, r.err)
			}
			got = append(got, r)
		case <-deadline:
			t.Fatalf("only %d of 2 answers within %v: %+v", len(got), wait, got)
		}
	}
	byName := map[string]restResult{got[0].name: got[0], got[1].name: got[1]}
	if n := byName["normal"]; n.status != http.StatusOK || !strings.Contains(n.body, `"Manufacturer":"Acme"`) {
		t.Errorf("normal device: %d %s", n.status, n.body)
	}
	s := byName["silent"]
	if s.status != http.StatusGatewayTimeout {
		t.Errorf("silent device: %d %s, want 504", s.status, s.body)
	}
	if got[0].name != "normal" {
		t.Errorf("the silent device's 504 (after %v) came before the normal device's answer (after %v): one device held up the other",
			s.elapsed, byName["normal"].elapsed)
	}
	if s.elapsed < shortRequestTimeout*9/10 || s.elapsed > 5*shortRequestTimeout {
		t.Errorf("504 after %v, want about the request timeout %v", s.elapsed, shortRequestTimeout)
	}
}

func TestMalformedBodiesDoNotReachTheDevice(t *testing.T) {
	srv := testserver.Start(t)
	api := testserver.Client{T: t, Token: srv.Token(t)}
	root := api.Get(srv.URL + "/").Body
	dev := startDevice(t, srv, sim.Config{Endpoint: "e2e-strict", Lifetime: 60, Manufacturer: "Acme", Light: true})

	dev0 := find(t, api.Get(objectInstancesHref(t, api, root, "e2e-strict", "3")).Body, "InstanceID", "0")
	update := testserver.Link(t, dev0, "update")
	tempsHref := objectInstancesHref(t, api, root, "e2e-strict", "3303")
	temps := api.Get(tempsHref).Body
	add := testserver.Link(t, temps, "add")
	tempCount := len(testserver.Items(temps))

	watched := []lwm2m.Path{lwm2m.ResourcePath(3, 0, 0), lwm2m.ResourcePath(3, 0, 13), lwm2m.ResourcePath(3, 0, 14), lwm2m.ResourcePath(3, 0, 15)}
	before := map[lwm2m.Path]any{}
	for _, p := range watched {
		before[p], _ = dev.Get(p)
	}

	tests := []struct {
		name, method, href, ct, body string
		fields                       []string
	}{
		{"malformed JSON", http.MethodPut, update, deviceType, `{"UTCOffset":`, nil},
		{"not an object", http.MethodPut, update, deviceType, `["UTCOffset"]`, nil},
		{"wrong type", http.MethodPut, update, deviceType, `{"UTCOffset":5}`, []string{"UTCOffset"}},
		{"read-only resource", http.MethodPut, update, deviceType, `{"Manufacturer":"Evil"}`, []string{"Manufacturer"}},
		{"unknown field", http.MethodPut, update, deviceType, `{"Colour":"red"}`, []string{"Colour"}},
		{"one bad field spoils the write", http.MethodPut, update, "application/json",
			`{"UTCOffset":"+09:00","Timezone":"Asia/Tokyo","CurrentTime":"soon"}`, []string{"CurrentTime"}},
		{"executable in a write", http.MethodPut, update, deviceType, `{"UTCOffset":"+09:00","Reboot":""}`, []string{"Reboot"}},
		{"trailing garbage", http.MethodPut, update, deviceType, `{"UTCOffset":"+09:00"} {}`, nil},
		{"bad instance ID on create", http.MethodPost, add, tempType, `{"InstanceID":"seven","ApplicationType":"probe"}`, []string{"InstanceID"}},
		{"wrong type on create", http.MethodPost, add, tempType, `{"InstanceID":"7","SensorValue":"hot"}`, []string{"SensorValue"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := api.Do(tt.method, tt.href, tt.ct, tt.body)
			if r.Status != http.StatusBadRequest || r.Header.Get("Content-Type") != "application/vnd.imgtec.badrequest+json" {
				t.Fatalf("status %d %q %s, want a 400 BadRequest", r.Status, r.Header.Get("Content-Type"), r.Raw)
			}
			var fields []string
			for _, f := range bodyList(r.Body["InvalidFields"]) {
				fields = append(fields, fmt.Sprint(f))
			}
			if strings.Join(fields, ",") != strings.Join(tt.fields, ",") {
				t.Errorf("InvalidFields %v, want %v", fields, tt.fields)
			}
		})
	}
	for _, p := range watched {
		if now, _ := dev.Get(p); now != before[p] {
			t.Errorf("device %s changed from %v to %v by rejected requests", p, before[p], now)
		}
	}
	if n := len(testserver.Items(api.Get(tempsHref).Body)); n != tempCount {
		t.Errorf("the device has %d temperature instances after rejected creates, want %d", n, tempCount)
	}
	// A valid write still goes through, so the checks above were meaningful.
	if r := api.Do(http.MethodPut, update, deviceType, map[string]any{"UTCOffset": "+09:00"}); r.Status != http.StatusNoContent {
		t.Fatalf("valid write: %d %s", r.Status, r.Raw)
	}
	if v, _ := dev.Get(lwm2m.ResourcePath(3, 0, 14)); v != "+09:00" {
		t.Errorf("device UTCOffset %v after a valid write", v)
	}
}

func bodyList(v any) []any { s, _ := v.([]any); return s }
