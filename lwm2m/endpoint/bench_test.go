package endpoint

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
)

// BenchmarkRegister measures Register throughput against the SQLite store:
// 64 devices (sockets) register distinct endpoints concurrently. Run
// without -race for meaningful numbers:
//
//	go test -run '^$' -bench Register -benchtime 20000x ./lwm2m/endpoint/
func BenchmarkRegister(b *testing.B) {
	st := openStore(b, b.TempDir())
	defer st.Close()
	var events atomic.Int64
	srv := New(Config{Addr: "127.0.0.1:0", DefaultOrganisation: "bench"}, st, testModels{},
		func(context.Context, Event) { events.Add(1) })
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()

	const devices = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	b.ResetTimer()
	for i := 0; i < devices; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc, err := udp.Dial(srv.Addr().String(), options.WithErrors(func(error) {}))
			if err != nil {
				errs <- err
				return
			}
			defer cc.Close()
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				resp, err := cc.Post(context.Background(), "/rd", message.AppLinkFormat,
					strings.NewReader(payload11), queryOpts(fmt.Sprintf("ep=bench-%d&lt=300&lwm2m=1.1&b=U", n))...)
				if err != nil {
					errs <- err
					return
				}
				code := resp.Code()
				cc.ReleaseMessage(resp)
				if code != codes.Created {
					errs <- fmt.Errorf("register: %v", code)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reg/s")
}
