// Package deviceserver wires the parts of the device server together: the
// store, the object model, the CoAP endpoint, the subscription engine and
// the REST API. cmd/deviceserver and the end-to-end tests both start the
// server through Start, so the tests run exactly what users run.
package deviceserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/deviceserver/deviceserver/hypermedia"
	"github.com/deviceserver/deviceserver/lwm2m/endpoint"
	"github.com/deviceserver/deviceserver/lwm2m/model"
	"github.com/deviceserver/deviceserver/lwm2m/security"
	"github.com/deviceserver/deviceserver/server"
	"github.com/deviceserver/deviceserver/storage/sqlite"
	"github.com/deviceserver/deviceserver/subscriptions"
)

// Config is everything the command line can set.
type Config struct {
	HTTPAddr        string
	CoAPAddr        string
	DataDir         string
	ModelsDir       string // folder of OMA DDF XML files loaded as built-ins; "" for none
	Synchronous     string // SQLite synchronous mode: NORMAL or FULL
	AdminKey        string
	AdminSecret     string
	NoSecOrg        string // organisation of NoSec devices; "" = the administrator's
	AccessTTL       time.Duration
	RefreshTTL      time.Duration
	RequestTimeout  time.Duration
	ExpiryInterval  time.Duration
	TrustProxy      bool
	WebhookRetryMax int
	SecretHashCost  int // bcrypt cost of stored secrets; 0 = bcrypt's default (tests lower it)
	Logger          *slog.Logger
	// WebhookAllow limits webhook destinations (subscription URLs and m2m
	// callbacks) to these host names, *.domains, IP addresses and CIDR
	// networks; empty allows any destination.
	WebhookAllow []string
	// SkipDeviceInfo turns off reading make, model, serial number and
	// firmware version from each device's object 3 after registration.
	SkipDeviceInfo bool
	// Out receives the first-start administrator credentials (printed once).
	Out io.Writer
}

// Instance is a running device server.
type Instance struct {
	HTTPAddr net.Addr
	CoAPAddr net.Addr
	AdminOrg string
	// Credentials are set on the first start when the store was empty.
	Credentials *server.Credentials

	store    *sqlite.Store
	endpoint *endpoint.Server
	engine   *subscriptions.Engine
	http     *http.Server
	httpDone chan error
}

// Start opens the store, binds every socket and serves in the background.
func Start(ctx context.Context, cfg Config) (_ *Instance, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	inst := &Instance{}
	defer func() {
		if err != nil {
			inst.Close()
		}
	}()
	if inst.store, err = sqlite.Open(ctx, cfg.DataDir, sqlite.Options{Synchronous: cfg.Synchronous, Logger: log}); err != nil {
		return nil, fmt.Errorf("deviceserver: %w", err)
	}
	models, err := loadModels(ctx, inst.store, cfg.ModelsDir)
	if err != nil {
		return nil, err
	}
	if inst.AdminOrg, inst.Credentials, err = server.Bootstrap(ctx, inst.store, cfg.AdminKey, cfg.AdminSecret, time.Now().UTC(), cfg.SecretHashCost); err != nil {
		return nil, fmt.Errorf("deviceserver: %w", err)
	}
	if inst.Credentials != nil && cfg.Out != nil {
		fmt.Fprintf(cfg.Out, "Administrator access key (shown once, keep it):\n  key:    %s\n  secret: %s\n", inst.Credentials.Key, inst.Credentials.Secret)
	}
	ca, err := security.LoadOrCreateCA(ctx, inst.store, time.Now())
	if err != nil {
		return nil, fmt.Errorf("deviceserver: %w", err)
	}
	tokenKey, err := signingKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	nosec := cfg.NoSecOrg
	if nosec == "" {
		nosec = inst.AdminOrg
	}

	// The endpoint reports device events to the engine, and the engine
	// observes devices through the endpoint; the closure breaks the cycle.
	inst.endpoint = endpoint.New(endpoint.Config{
		Addr: cfg.CoAPAddr, DefaultOrganisation: nosec, RequestTimeout: cfg.RequestTimeout,
		ExpiryCheckInterval: cfg.ExpiryInterval, Logger: log,
	}, inst.store, models, func(ctx context.Context, ev endpoint.Event) { inst.dispatch(ctx, ev) })
	inst.engine = subscriptions.New(subscriptions.Config{
		Store: inst.store, Device: inst.endpoint, Render: hypermedia.NotificationValue(models),
		RetryMax: cfg.WebhookRetryMax, AllowedDestinations: cfg.WebhookAllow, SkipDeviceInfo: cfg.SkipDeviceInfo, Logger: log,
	})
	if err := inst.engine.Start(ctx); err != nil {
		return nil, fmt.Errorf("deviceserver: start subscriptions: %w", err)
	}
	if err := inst.endpoint.Start(ctx); err != nil {
		return nil, fmt.Errorf("deviceserver: start CoAP: %w", err)
	}
	inst.CoAPAddr = inst.endpoint.Addr()

	api := server.New(server.Config{
		Store: inst.store, Models: models, Devices: inst.endpoint, Subscriptions: inst.engine, Metrics: inst.endpoint, CA: ca,
		Bootstrap: server.BootstrapInfo{CoAPURI: "coap://" + inst.CoAPAddr.String()}, TokenKey: tokenKey,
		AccessTTL: cfg.AccessTTL, RefreshTTL: cfg.RefreshTTL, TrustProxy: cfg.TrustProxy, Logger: log,
		HashCost: cfg.SecretHashCost,
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("deviceserver: listen HTTP: %w", err)
	}
	inst.HTTPAddr = ln.Addr()
	inst.http = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	inst.httpDone = make(chan error, 1)
	go func() { inst.httpDone <- inst.http.Serve(ln) }()
	log.Info("deviceserver ready", "http", inst.HTTPAddr.String(), "coap", inst.CoAPAddr.String(), "data", cfg.DataDir)
	return inst, nil
}

// dispatch routes a device event to the subscription engine.
func (inst *Instance) dispatch(ctx context.Context, ev endpoint.Event) {
	switch ev.Type {
	case endpoint.EventRegistered:
		inst.engine.ClientRegistered(ctx, ev.Registration)
	case endpoint.EventUpdated:
		inst.engine.ClientUpdated(ctx, ev.Registration)
	case endpoint.EventDeregistered:
		inst.engine.ClientDeregistered(ctx, ev.Registration)
	case endpoint.EventExpired:
		inst.engine.ClientExpired(ctx, ev.Registration)
	case endpoint.EventNotify:
		inst.engine.Notify(ctx, ev.Registration, ev.Path, ev.Records, ev.Time)
	}
}

// Close stops serving: HTTP first (no new requests), then the device side,
// then deliveries, then the store.
func (inst *Instance) Close() error {
	var errs []error
	if inst.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, inst.http.Shutdown(ctx))
		cancel()
		if err := <-inst.httpDone; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if inst.endpoint != nil {
		errs = append(errs, inst.endpoint.Close())
	}
	if inst.engine != nil {
		errs = append(errs, inst.engine.Close())
	}
	if inst.store != nil {
		errs = append(errs, inst.store.Close())
	}
	return errors.Join(errs...)
}

// loadModels builds the object registry: the embedded built-ins, then the
// models folder (its definitions replace embedded ones of the same ID and
// are visible to every organisation), then every organisation's own.
func loadModels(ctx context.Context, st *sqlite.Store, dir string) (*model.Registry, error) {
	builtins, err := model.Builtins()
	if err != nil {
		return nil, fmt.Errorf("deviceserver: built-in objects: %w", err)
	}
	if dir != "" {
		extra, err := model.LoadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("deviceserver: --models-dir: %w", err)
		}
		byID := map[uint16]*model.Object{}
		for _, o := range append(builtins, extra...) {
			byID[o.ID] = o
		}
		builtins = builtins[:0]
		for _, o := range byID {
			builtins = append(builtins, o)
		}
	}
	reg := model.NewRegistry(builtins)
	custom, err := st.ListObjectDefinitions(ctx)
	if err != nil {
		return nil, fmt.Errorf("deviceserver: load definitions: %w", err)
	}
	for org, objs := range custom {
		for i := range objs {
			reg.Put(org, &objs[i])
		}
	}
	return reg, nil
}

// signingKey loads the access-token signing key from the data directory,
// creating it on first start, so tokens stay valid across restarts.
func signingKey(dir string) ([]byte, error) {
	p := filepath.Join(dir, "token-signing.key")
	if b, err := os.ReadFile(p); err == nil && len(b) >= 32 {
		return b, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("deviceserver: token key: %w", err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("deviceserver: token key: %w", err)
	}
	return b, nil
}
