package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/internal/testserver"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

func TestZZCapture(t *testing.T) {
	if os.Getenv("CAPTURE") == "" {
		return
	}
	srv := testserver.Start(t)
	dev := sim.New(sim.Config{Endpoint: "sim-1", Server: srv.CoAPAddr.String(), Light: true})
	if err := dev.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	tok := srv.Token(t)
	do := func(method, path, ct, body string, hdr ...string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("=== %s %s -> %d %s\n%s\n", method, path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	api := testserver.Client{T: t, Token: tok}
	cl := testserver.Items(api.Get(srv.URL + "/clients").Body)[0]["ClientID"].(string)
	for _, p := range strings.Fields(os.Getenv("CAPTURE")) {
		p = strings.ReplaceAll(p, "{client}", cl)
		m, path, _ := strings.Cut(p, ":")
		do(m, path, "", "")
	}
	do("POST", "/accesskeys", "application/vnd.imgtec.accesskey+json", `{"Name":"docs"}`)
	do("POST", "/subscriptions", "application/vnd.oma.lwm2m.subscription+json", `{"SubscriptionType":"ClientConnected","Url":"https://app.example.com/hooks"}`)
	do("POST", "/clients/"+cl+"/objecttypes/3303/instances/0/subscriptions", "application/vnd.oma.lwm2m.subscription+json", `{"SubscriptionType":"Observation","Url":"https://app.example.com/hooks","Property":"SensorValue","Attributes":{"Pmin":5,"Pmax":60,"Step":0.5}}`)
	do("GET", "/subscriptions", "", "")
	do("POST", "/subscriptions", "application/vnd.oma.lwm2m.subscription+json", `{"SubscriptionType":"ClientConnected","Url":"ftp://x"}`)
	do("POST", "/objecttypes/definitions", "application/vnd.imgtec.objectdefinition+json", `{"ObjectID":"20000","Name":"Valve","Properties":[{"PropertyID":"0","Name":"Open","DataType":"Boolean","Access":"ReadWrite"}]}`)
	do("GET", "/objecttypes/definitions/20000", "", "")
	do("POST", "/clients/"+cl+"/objecttypes/3303/instances", "application/vnd.oma.lwm2m.temperature+json", `{"InstanceID":"1","ApplicationType":"probe"}`)
	do("GET", "/clients", "", "", "Authorization", "")
	do("GET", "/clients", "", "", "Accept", "text/html")
	do("PUT", "/subscriptions/zzz", "text/plain", "x")
	do("GET", "/clients?pageSize=5000", "", "")
	do("GET", "/identities", "", "")
}
