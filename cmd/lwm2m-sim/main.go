// Command lwm2m-sim runs simulated LwM2M devices against a server.
//
// Run mode (default) starts one or a few devices that register, keep their
// registration updated, answer the server's requests and log what happens,
// until interrupted; then they de-register:
//
//	lwm2m-sim -server 127.0.0.1:5683 -endpoint sim-1 -vary 5s
//
// Load mode registers many devices, each on its own UDP socket, with a
// bounded concurrency, and prints registration throughput and latency.
// Its devices are lean, so that the generator's CPU does not cap what it
// measures: they register, answer the server's reads of object 3 (Device:
// manufacturer, model, the endpoint name as serial number, firmware
// version) and nothing else (4.04), and de-register:
//
//	lwm2m-sim -load -n 5000 -c 50 -server 127.0.0.1:5683 [-json] [-deregister=false]
//
// Every flag has an environment twin: DS_SIM_ and the flag name in upper
// case with '-' as '_' (DS_SIM_SERVER, DS_SIM_N, ...). Flags on the command
// line win over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// simFlags are the parsed flags.
type simFlags struct {
	server     string
	endpoint   string
	lifetime   uint
	version    string
	vary       time.Duration
	n, c       int
	load       bool
	deregister bool
	json       bool
	timeout    time.Duration
	hold       time.Duration
	verbose    bool
}

// envPrefix is prepended to a flag's upper-cased name to get its environment twin.
const envPrefix = "DS_SIM_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, filling flags not given on the command line from
// their DS_SIM_* environment twins.
func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (simFlags, error) {
	var o simFlags
	fs := flag.NewFlagSet("lwm2m-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: lwm2m-sim [flags]   (run mode: devices until interrupted)")
		fmt.Fprintln(stderr, "       lwm2m-sim -load -n 5000 -c 50 [flags]   (load mode: registration throughput)")
		fmt.Fprintln(stderr, "Every flag may also be set as DS_SIM_<NAME> (e.g. DS_SIM_SERVER); the command line wins.")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.server, "server", "127.0.0.1:5683", "LwM2M server host:port (CoAP over UDP)")
	fs.StringVar(&o.endpoint, "endpoint", "sim-1", "endpoint name; with -n > 1 or -load, the prefix of endpoint-<i>")
	fs.UintVar(&o.lifetime, "lifetime", 300, "registration lifetime in seconds")
	fs.StringVar(&o.version, "version", "1.1", "LwM2M version to register with: 1.1 or 1.0")
	fs.DurationVar(&o.vary, "vary", 0, "run mode: change the temperature by a random walk at this period (0: never)")
	fs.IntVar(&o.n, "n", 1, "number of devices")
	fs.IntVar(&o.c, "c", 50, "load mode: registrations in flight at once")
	fs.BoolVar(&o.load, "load", false, "load mode: register -n devices, print throughput and latency, exit")
	fs.BoolVar(&o.deregister, "deregister", true, "load mode: de-register the devices afterwards (measured)")
	fs.BoolVar(&o.json, "json", false, "load mode: print the summary as JSON")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound on each request to the server")
	fs.DurationVar(&o.hold, "hold", 0, "load mode: stay registered this long (or until interrupted) before de-registering")
	fs.BoolVar(&o.verbose, "v", false, "log debug details")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	if err != nil {
		return o, err
	}
	switch {
	case o.n < 1:
		return o, errors.New("-n must be at least 1")
	case o.c < 1:
		return o, errors.New("-c must be at least 1")
	case o.version != "1.0" && o.version != "1.1":
		return o, errors.New("-version must be 1.0 or 1.1")
	case o.lifetime < 1 || o.lifetime > 1<<32-1:
		return o, errors.New("-lifetime must be 1..4294967295")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o, err := parseFlags(args, stderr, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "lwm2m-sim:", err)
		return 2
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if o.load {
		return runLoadMode(ctx, o, stdout, stderr)
	}
	if err := runDevices(ctx, o, logger, nil); err != nil {
		logger.Error("lwm2m-sim", "err", err)
		return 1
	}
	return 0
}

// runDevices runs o.n devices until ctx ends, then de-registers them.
// ready, when not nil, is called once all devices are registered.
func runDevices(ctx context.Context, o simFlags, logger *slog.Logger, ready func()) error {
	var devices, registered []*sim.Device
	defer func() {
		for _, d := range devices {
			_ = d.Close()
		}
	}()
	var startErr error
	for i := 1; i <= o.n; i++ {
		ep := o.endpoint
		if o.n > 1 {
			ep = fmt.Sprintf("%s-%d", o.endpoint, i)
		}
		d := sim.New(sim.Config{
			Endpoint:  ep,
			Server:    o.server,
			Lifetime:  uint32(o.lifetime),
			Version:   o.version,
			VaryEvery: o.vary,
			Timeout:   o.timeout,
			Logger:    logger,
		})
		devices = append(devices, d)
		if err := d.Start(ctx); err != nil {
			if ctx.Err() == nil { // an interrupt while starting is no error
				startErr = fmt.Errorf("device %s: %w", ep, err)
			}
			break
		}
		registered = append(registered, d)
		go logExecutions(ctx, logger.With("endpoint", ep), d)
	}
	if startErr == nil && ctx.Err() == nil {
		logger.Info("devices running; interrupt to de-register and stop", "count", len(devices), "server", o.server)
		if ready != nil {
			ready()
		}
		<-ctx.Done()
	}
	errs := []error{startErr}
	for _, d := range registered {
		// The run context is over; de-registering still deserves its own bound.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
		if err := d.Deregister(dctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	return errors.Join(errs...)
}

func logExecutions(ctx context.Context, logger *slog.Logger, d *sim.Device) {
	for {
		select {
		case <-ctx.Done():
			return
		case ex := <-d.Executed():
			logger.Info("executed", "path", ex.Path.String(), "args", ex.Args)
		}
	}
}

// runLoadMode runs the load test and prints its summary.
func runLoadMode(ctx context.Context, o simFlags, stdout, stderr io.Writer) int {
	need := uint64(o.n) + 64
	soft, hard, err := raiseFDLimit()
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "lwm2m-sim: cannot raise the file-descriptor limit: %v\n", err)
	case soft > 0 && soft < need:
		fmt.Fprintf(stderr, "lwm2m-sim: file-descriptor limit %d (hard %d) is below the ~%d that %d sockets need; raise it (ulimit -n) or expect errors\n", soft, hard, need, o.n)
	}
	res := runLoad(ctx, loadConfig{
		Server:      o.server,
		Prefix:      o.endpoint,
		N:           o.n,
		Concurrency: o.c,
		Lifetime:    uint32(o.lifetime),
		Version:     o.version,
		Timeout:     o.timeout,
		Deregister:  o.deregister,
		Hold:        o.hold,
	})
	res.FDLimit = soft
	if o.json {
		if err := writeJSON(stdout, res); err != nil {
			fmt.Fprintln(stderr, "lwm2m-sim:", err)
			return 1
		}
	} else {
		writeText(stdout, res)
	}
	if res.Register.Errors > 0 || (res.Deregister != nil && res.Deregister.Errors > 0) {
		return 1
	}
	return 0
}
