package sim

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/monitor/inactivity"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpserver "github.com/plgd-dev/go-coap/v3/udp/server"
)

// dial opens the device's socket and a go-coap client connection to the
// server over it. It does what udp.Dial does, with one difference: the
// socket is not connected. On Linux a connected UDP socket reports the ICMP
// "port unreachable" that answers a datagram sent while the server is down
// as an error on its next read, and go-coap then closes the connection for
// good; a device that keeps notifying across a server restart must keep its
// socket, as real devices do. The socket is bound to the local address the
// kernel would pick toward the server, so that LocalAddr reports the address
// the server sees. Block-wise transfer is not supported (the simulator's
// payloads fit in one datagram and it turns block-wise off).
func dial(target string, opts ...udp.Option) (*udpclient.Conn, error) {
	raddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	laddr := &net.UDPAddr{}
	if probe, err := net.DialUDP("udp", nil, raddr); err == nil { // connect only; nothing is sent
		if la, ok := probe.LocalAddr().(*net.UDPAddr); ok {
			laddr.IP = la.IP
		}
		_ = probe.Close()
	}
	sock, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, err
	}

	cfg := udpclient.DefaultConfig
	for _, o := range opts {
		o.UDPClientApply(&cfg)
	}
	if cfg.BlockwiseEnable {
		_ = sock.Close()
		return nil, fmt.Errorf("block-wise transfer is not supported")
	}
	errorsFunc := cfg.Errors
	if errorsFunc == nil {
		errorsFunc = func(error) {}
	}
	cfg.Errors = func(err error) {
		if coapnet.IsCancelOrCloseError(err) {
			return // the connection is being closed
		}
		errorsFunc(fmt.Errorf("udp: %v: %w", raddr, err))
	}
	if cfg.CreateInactivityMonitor == nil {
		cfg.CreateInactivityMonitor = func() udpclient.InactivityMonitor {
			return inactivity.NewNilMonitor[*udpclient.Conn]()
		}
	}
	if cfg.MessagePool == nil {
		cfg.MessagePool = pool.New(0, 0)
	}
	l := coapnet.NewUDPConn(cfg.Net, sock, coapnet.WithErrors(cfg.Errors))
	session := udpserver.NewSession(cfg.Ctx, context.Background(), l, raddr, cfg.MaxMessageSize, cfg.MTU, true)
	cc := udpclient.NewConnWithOpts(session, &cfg,
		udpclient.WithBlockWise(func(*udpclient.Conn) *blockwise.BlockWise[*udpclient.Conn] { return nil }),
		udpclient.WithInactivityMonitor(cfg.CreateInactivityMonitor()),
		udpclient.WithRequestMonitor(cfg.RequestMonitor),
	)
	cfg.PeriodicRunner(func(now time.Time) bool {
		cc.CheckExpirations(now)
		return cc.Context().Err() == nil
	})
	go func() {
		if err := cc.Run(); err != nil {
			cfg.Errors(err)
		}
	}()
	return cc, nil
}
