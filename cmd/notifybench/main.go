// Command notifybench measures notifications end to end: from simulated
// devices over CoAP, through the device server's subscription engine, to a
// webhook receiver. It starts the server in-process (internal/deviceserver,
// as cmd/deviceserver does) with a store in a temporary directory, a
// webhook receiver on loopback, and -devices lean simulated devices (one
// UDP socket each, no go-coap client, so that the tool costs little CPU
// next to the server it measures). Each device registers and gets one
// Observation subscription on its Sensor Value (/3303/0/5700) through the
// REST API, with the chosen DeletionPolicy; then the devices send
// notifications with increasing values at -rate per second in total for
// -duration (NON, or CON with -con), and the receiver measures:
//
//   - delivered: distinct notifications (webhook items, not POSTs) per
//     second, from the first notification sent to the last one delivered;
//   - POSTs per second, items per POST, and the TCP connections the
//     server opened to deliver them;
//   - latency from the device's send to the receiver, p50/p99/max;
//   - lost: sent but not delivered after the drain period; dup: items
//     delivered more than once; with -con, the ACKs and retransmissions;
//   - the server's own Dropped and Pending counts (GET /subscriptions),
//     the kernel's UDP receive-buffer drops over the run (Linux), and the
//     process's CPU use (tool and server) in cores.
//
// One summary line per run; by default a run with DeletionPolicy 0, then
// one with DeletionPolicy 1:
//
//	notifybench -devices 100 -rate 5000 -duration 10s [-policy 0|1] [-con] [-cpuprofile cpu.out]
//
// With -cpuprofile the send and drain phases of each run are profiled; the
// tool's own goroutines carry the label side=tool, so that
//
//	go tool pprof -tagignore side=tool -top cpu.out
//
// shows the server's side alone. -debug-addr serves net/http/pprof during
// the runs (goroutine, block and mutex profiles of both sides).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "notifybench:", err)
		}
		os.Exit(1)
	}
}

// config is one invocation.
type config struct {
	policies   []int
	devices    int
	rate       float64
	duration   time.Duration
	con        bool
	drain      time.Duration
	idle       time.Duration
	cpuprofile string
	sync       string
	logLevel   string
	debugAddr  string
}

func parseFlags(args []string, errOut io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("notifybench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	policy := fs.String("policy", "0,1", "DeletionPolicy of the subscriptions: 0, 1, or 0,1 for a run of each")
	fs.IntVar(&c.devices, "devices", 100, "simulated devices, one subscription each")
	fs.Float64Var(&c.rate, "rate", 5000, "notifications per second, all devices together")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long the devices notify")
	fs.BoolVar(&c.con, "con", false, "send confirmable notifications (retransmitted until ACKed)")
	fs.DurationVar(&c.drain, "drain", time.Minute, "longest wait for deliveries after the devices stop")
	fs.DurationVar(&c.idle, "idle", 5*time.Second, "stop draining after this long without a delivery")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the send and drain phases to this file (-dpN appended with several runs)")
	fs.StringVar(&c.sync, "sync", "NORMAL", "SQLite synchronous mode of the server: NORMAL or FULL")
	fs.StringVar(&c.logLevel, "log-level", "warn", "server log level: debug, info, warn or error")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "serve net/http/pprof on this address during the runs (goroutine, block and mutex profiles)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	for _, s := range strings.Split(*policy, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || (p != 0 && p != 1) {
			return c, fmt.Errorf("-policy: %q is not 0, 1 or 0,1", *policy)
		}
		c.policies = append(c.policies, p)
	}
	switch {
	case c.devices < 1:
		return c, errors.New("-devices must be at least 1")
	case c.rate <= 0 || c.duration <= 0:
		return c, errors.New("-rate and -duration must be positive")
	case int64(c.rate*c.duration.Seconds()) < int64(c.devices):
		return c, errors.New("-rate × -duration must give every device a notification")
	}
	return c, nil
}

func run(ctx context.Context, args []string, out, errOut io.Writer) error {
	c, err := parseFlags(args, errOut)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level}))
	fmt.Fprintln(out, "notifybench "+strings.Join(args, " "))
	if c.debugAddr != "" {
		ln, err := net.Listen("tcp", c.debugAddr)
		if err != nil {
			return fmt.Errorf("-debug-addr: %w", err)
		}
		defer ln.Close()
		runtime.SetBlockProfileRate(int(time.Microsecond))
		runtime.SetMutexProfileFraction(10)
		go func() { _ = http.Serve(ln, nil) }() // http.DefaultServeMux has net/http/pprof
	}
	for _, p := range c.policies {
		profile := c.cpuprofile
		if profile != "" && len(c.policies) > 1 {
			profile += "-dp" + strconv.Itoa(p)
		}
		res, err := runOnce(ctx, runConfig{
			policy: p, devices: c.devices, rate: c.rate, duration: c.duration, con: c.con,
			drain: c.drain, idle: c.idle, cpuprofile: profile, sync: c.sync, log: log,
		})
		if err != nil {
			return fmt.Errorf("DP%d: %w", p, err)
		}
		fmt.Fprintln(out, res.String())
	}
	return nil
}
