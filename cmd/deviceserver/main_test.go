package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(options) bool
		error bool
	}{
		{name: "defaults", check: func(o options) bool {
			return o.cfg.HTTPAddr == ":8080" && o.cfg.CoAPAddr == ":5683" && o.cfg.DataDir == "./data" &&
				o.cfg.AccessTTL == time.Hour && o.cfg.Synchronous == "NORMAL" && o.logLevel == "info"
		}},
		{name: "environment", env: map[string]string{"DS_HTTP_ADDR": ":9", "DS_DATA_DIR": "/x", "DS_ACCESS_TOKEN_TTL": "5m", "DS_SYNC": "full", "DS_TRUST_PROXY": "true"},
			check: func(o options) bool {
				return o.cfg.HTTPAddr == ":9" && o.cfg.DataDir == "/x" && o.cfg.AccessTTL == 5*time.Minute && o.cfg.Synchronous == "FULL" && o.cfg.TrustProxy
			}},
		{name: "flag beats environment", args: []string{"--http", ":7"}, env: map[string]string{"DS_HTTP_ADDR": ":9"},
			check: func(o options) bool { return o.cfg.HTTPAddr == ":7" }},
		{name: "admin pair", args: []string{"--admin-key", "k", "--admin-secret", "s"},
			check: func(o options) bool { return o.cfg.AdminKey == "k" && o.cfg.AdminSecret == "s" }},
		{name: "admin key alone", args: []string{"--admin-key", "k"}, error: true},
		{name: "webhooks to any destination, device info read by default", check: func(o options) bool {
			return o.cfg.WebhookAllow == nil && !o.cfg.SkipDeviceInfo
		}},
		{name: "webhook allow-list", args: []string{"--webhook-allow", " hooks.example.com, *.example.org,,192.0.2.0/24 ,2001:db8::1"},
			check: func(o options) bool {
				return slices.Equal(o.cfg.WebhookAllow, []string{"hooks.example.com", "*.example.org", "192.0.2.0/24", "2001:db8::1"})
			}},
		{name: "webhook allow-list from the environment", env: map[string]string{"DS_WEBHOOK_ALLOW": "10.0.0.0/8"},
			check: func(o options) bool { return slices.Equal(o.cfg.WebhookAllow, []string{"10.0.0.0/8"}) }},
		{name: "flag allow-list beats environment", args: []string{"--webhook-allow", "a.example"}, env: map[string]string{"DS_WEBHOOK_ALLOW": "b.example"},
			check: func(o options) bool { return slices.Equal(o.cfg.WebhookAllow, []string{"a.example"}) }},
		{name: "no device info", args: []string{"--device-info=false"}, check: func(o options) bool { return o.cfg.SkipDeviceInfo }},
		{name: "no device info from the environment", env: map[string]string{"DS_DEVICE_INFO": "false"},
			check: func(o options) bool { return o.cfg.SkipDeviceInfo }},
		{name: "flag device info beats environment", args: []string{"--device-info"}, env: map[string]string{"DS_DEVICE_INFO": "false"},
			check: func(o options) bool { return !o.cfg.SkipDeviceInfo }},
		{name: "bad env boolean", env: map[string]string{"DS_DEVICE_INFO": "sometimes"}, error: true},
		{name: "bad sync", args: []string{"--sync", "OFF"}, error: true},
		{name: "bad env duration", env: map[string]string{"DS_REQUEST_TIMEOUT": "soon"}, error: true},
		{name: "stray argument", args: []string{"serve"}, error: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, env(tc.env), io.Discard)
			if tc.error {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil || !tc.check(o) {
				t.Fatalf("got %+v, %v", o, err)
			}
		})
	}
}

// TestFirstStartPrintsCredentials runs the command as a user would on a
// fresh data directory: it prints an administrator key once, and that key
// gets a token.
func TestFirstStartPrintsCredentials(t *testing.T) {
	dir := t.TempDir()
	getenv := func(k string) string {
		return map[string]string{"DS_HTTP_ADDR": "127.0.0.1:0", "DS_COAP_ADDR": "127.0.0.1:0", "DS_DATA_DIR": dir}[k]
	}
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	logR, logW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, getenv, outW, logW) }()

	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	httpAddr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(logR)
		for sc.Scan() {
			if _, after, ok := strings.Cut(sc.Text(), " http="); ok {
				httpAddr <- strings.Fields(after)[0]
			}
		}
	}()
	var key, secret string
	deadline := time.After(10 * time.Second)
	for key == "" || secret == "" {
		select {
		case l := <-lines:
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "key:"); ok {
				key = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "secret:"); ok {
				secret = strings.TrimSpace(v)
			}
		case <-deadline:
			t.Fatal("no credentials printed")
		}
	}
	var addr string
	select {
	case addr = <-httpAddr:
	case <-deadline:
		t.Fatal("no ready line with the HTTP address")
	}
	resp, err := http.PostForm("http://"+addr+"/oauth/token", url.Values{"grant_type": {"password"}, "username": {key}, "password": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("token with the printed key: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("graceful stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop on cancel")
	}
	outW.Close()
	logW.Close()
}
