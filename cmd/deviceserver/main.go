// Command deviceserver runs the LwM2M device server: CoAP for devices, the
// REST API for applications, webhooks for subscribers. Every flag has an
// environment twin (DS_...); a flag given on the command line wins.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/deviceserver/deviceserver/internal/deviceserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "deviceserver:", err)
		os.Exit(1)
	}
}

// options are the parsed flags.
type options struct {
	cfg          deviceserver.Config
	coaps        string
	logLevel     string
	webhookAllow string // comma-separated, into cfg.WebhookAllow
	deviceInfo   bool   // false sets cfg.SkipDeviceInfo
}

// parseFlags reads flags, with defaults taken from the environment.
func parseFlags(args []string, getenv func(string) string, errOut io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("deviceserver", flag.ContinueOnError)
	fs.SetOutput(errOut)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var envErr error
	dur := func(name string, def time.Duration) time.Duration {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				envErr = fmt.Errorf("%s: %w", name, err)
			}
			return d
		}
		return def
	}
	boolean := func(name string, def bool) bool {
		b, err := strconv.ParseBool(env(name, strconv.FormatBool(def)))
		if err != nil {
			envErr = fmt.Errorf("%s: %w", name, err)
		}
		return b
	}
	integer := func(name string, def int) int {
		n, err := strconv.Atoi(env(name, strconv.Itoa(def)))
		if err != nil {
			envErr = fmt.Errorf("%s: %w", name, err)
		}
		return n
	}
	c := &o.cfg
	fs.StringVar(&c.HTTPAddr, "http", env("DS_HTTP_ADDR", ":8080"), "REST API listen address (DS_HTTP_ADDR)")
	fs.StringVar(&c.CoAPAddr, "coap", env("DS_COAP_ADDR", ":5683"), "CoAP/UDP listen address for devices (DS_COAP_ADDR)")
	fs.StringVar(&o.coaps, "coaps", env("DS_COAPS_ADDR", ":5684"), "CoAP/DTLS listen address (DS_COAPS_ADDR); reserved: DTLS is not served yet")
	fs.StringVar(&c.DataDir, "data-dir", env("DS_DATA_DIR", "./data"), "directory of the embedded store (DS_DATA_DIR)")
	fs.StringVar(&c.ModelsDir, "models-dir", env("DS_MODELS_DIR", ""), "folder of OMA DDF XML object definitions to load at start (DS_MODELS_DIR)")
	fs.StringVar(&c.Synchronous, "sync", env("DS_SYNC", "NORMAL"), "SQLite synchronous mode: NORMAL survives a process kill, FULL also power loss (DS_SYNC)")
	fs.StringVar(&c.AdminKey, "admin-key", env("DS_ADMIN_KEY", ""), "administrator access key to create or reset at start (DS_ADMIN_KEY)")
	fs.StringVar(&c.AdminSecret, "admin-secret", env("DS_ADMIN_SECRET", ""), "secret of --admin-key (DS_ADMIN_SECRET)")
	fs.StringVar(&c.NoSecOrg, "nosec-org", env("DS_NOSEC_ORG", ""), "organisation ID that NoSec devices belong to; default the administrator's (DS_NOSEC_ORG)")
	fs.DurationVar(&c.AccessTTL, "access-token-ttl", dur("DS_ACCESS_TOKEN_TTL", time.Hour), "access token lifetime (DS_ACCESS_TOKEN_TTL)")
	fs.DurationVar(&c.RefreshTTL, "refresh-token-ttl", dur("DS_REFRESH_TOKEN_TTL", 30*24*time.Hour), "refresh token lifetime (DS_REFRESH_TOKEN_TTL)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", dur("DS_REQUEST_TIMEOUT", 5*time.Second), "how long a device has to answer a request (DS_REQUEST_TIMEOUT)")
	fs.DurationVar(&c.ExpiryInterval, "expiry-interval", dur("DS_EXPIRY_INTERVAL", time.Second), "how often registration lifetimes are checked (DS_EXPIRY_INTERVAL)")
	fs.BoolVar(&c.TrustProxy, "trust-proxy", boolean("DS_TRUST_PROXY", false), "build hrefs from X-Forwarded-Proto/-Host (DS_TRUST_PROXY)")
	fs.IntVar(&c.WebhookRetryMax, "webhook-retries", integer("DS_WEBHOOK_RETRIES", 3), "retries of a DeletionPolicy 0 webhook before it is dropped (DS_WEBHOOK_RETRIES)")
	fs.StringVar(&o.webhookAllow, "webhook-allow", env("DS_WEBHOOK_ALLOW", ""), "comma-separated webhook destinations allowed: host names, *.domains, IP addresses, CIDR networks; empty allows any (DS_WEBHOOK_ALLOW)")
	fs.BoolVar(&o.deviceInfo, "device-info", boolean("DS_DEVICE_INFO", true), "read make, model, serial number and firmware from each device's object 3 after registration (DS_DEVICE_INFO)")
	fs.StringVar(&o.logLevel, "log-level", env("DS_LOG_LEVEL", "info"), "debug, info, warn or error (DS_LOG_LEVEL)")
	if envErr != nil {
		return o, envErr
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch strings.ToUpper(c.Synchronous) {
	case "NORMAL", "FULL":
		c.Synchronous = strings.ToUpper(c.Synchronous)
	default:
		return o, fmt.Errorf("--sync must be NORMAL or FULL, not %q", c.Synchronous)
	}
	if (c.AdminKey == "") != (c.AdminSecret == "") {
		return o, fmt.Errorf("--admin-key and --admin-secret go together")
	}
	c.WebhookAllow = nil
	for _, e := range strings.Split(o.webhookAllow, ",") {
		if e = strings.TrimSpace(e); e != "" {
			c.WebhookAllow = append(c.WebhookAllow, e)
		}
	}
	c.SkipDeviceInfo = !o.deviceInfo
	return o, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, out, errOut io.Writer) error {
	o, err := parseFlags(args, getenv, errOut)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	o.cfg.Logger = slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level}))
	o.cfg.Out = out
	inst, err := deviceserver.Start(ctx, o.cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	o.cfg.Logger.Info("deviceserver stopping")
	return inst.Close()
}
