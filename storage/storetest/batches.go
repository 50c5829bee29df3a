package storetest

import (
	"math"
	"strings"
	"testing"

	"github.com/deviceserver/deviceserver/storage"
)

// testMarkBatch checks MarkBatch step by step: it marks only the entries
// of its subscription up to upTo that are not in a batch yet, Pending
// returns the marks, and Ack still removes marked and unmarked entries.
func testMarkBatch(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, id := range []string{"sub-a", "sub-b"} {
		must(t, s.CreateSubscription(ctx, subscription(id, "org-a", "reg-1", "ClientUpdated", "", t0())), "CreateSubscription(%s)", id)
	}
	// Interleaved, so that sub-b has entries below sub-a's upTo.
	ns := []storage.Notification{
		notification("sub-a", "a1", 1), notification("sub-b", "b1", 2), notification("sub-a", "a2", 3),
		notification("sub-a", "a3", 4), notification("sub-b", "b2", 5), notification("sub-a", "a4", 6),
		notification("sub-a", "a5", 7),
	}
	must(t, s.Enqueue(ctx, ns), "Enqueue")
	// An entry enqueued with a batch ID keeps it.
	pre := []storage.Notification{notification("sub-a", "a6", 8)}
	pre[0].BatchID = "pre"
	must(t, s.Enqueue(ctx, pre), "Enqueue with a batch ID")
	byDelivery := map[string]storage.Notification{}
	for _, n := range append(ns, pre...) {
		byDelivery[n.DeliveryID] = n
	}
	seq := func(delivery string) int64 { return byDelivery[delivery].Seq }

	// expect turns "a1=batch-1 a2=" into the entries a1 and a2 with
	// those batch IDs.
	expect := func(spec string) []storage.Notification {
		var out []storage.Notification
		for _, f := range strings.Fields(spec) {
			delivery, batch, _ := strings.Cut(f, "=")
			n := byDelivery[delivery]
			n.BatchID = batch
			out = append(out, n)
		}
		return out
	}
	steps := []struct {
		name         string
		change       func() error
		wantA, wantB string
	}{
		{"nothing marked", func() error { return nil },
			"a1= a2= a3= a4= a5= a6=pre", "b1= b2="},
		{"mark below the first entry", func() error { return s.MarkBatch(ctx, "sub-a", seq("a1")-1, "batch-0") },
			"a1= a2= a3= a4= a5= a6=pre", "b1= b2="},
		{"mark up to a2", func() error { return s.MarkBatch(ctx, "sub-a", seq("a2"), "batch-1") },
			"a1=batch-1 a2=batch-1 a3= a4= a5= a6=pre", "b1= b2="},
		{"mark up to a4: the marked keep their batch", func() error { return s.MarkBatch(ctx, "sub-a", seq("a4"), "batch-2") },
			"a1=batch-1 a2=batch-1 a3=batch-2 a4=batch-2 a5= a6=pre", "b1= b2="},
		{"mark up to a4 again: nothing left to mark", func() error { return s.MarkBatch(ctx, "sub-a", seq("a4"), "batch-3") },
			"a1=batch-1 a2=batch-1 a3=batch-2 a4=batch-2 a5= a6=pre", "b1= b2="},
		{"mark a subscription without entries", func() error { return s.MarkBatch(ctx, "sub-none", math.MaxInt64, "batch-5") },
			"a1=batch-1 a2=batch-1 a3=batch-2 a4=batch-2 a5= a6=pre", "b1= b2="},
		{"mark the other subscription", func() error { return s.MarkBatch(ctx, "sub-b", seq("b1"), "batch-b") },
			"a1=batch-1 a2=batch-1 a3=batch-2 a4=batch-2 a5= a6=pre", "b1=batch-b b2="},
		{"ack a marked batch", func() error { return s.Ack(ctx, "sub-a", seq("a2")) },
			"a3=batch-2 a4=batch-2 a5= a6=pre", "b1=batch-b b2="},
		{"mark everything", func() error { return s.MarkBatch(ctx, "sub-a", math.MaxInt64, "batch-6") },
			"a3=batch-2 a4=batch-2 a5=batch-6 a6=pre", "b1=batch-b b2="},
		{"ack part of the marked", func() error { return s.Ack(ctx, "sub-a", seq("a4")) },
			"a5=batch-6 a6=pre", "b1=batch-b b2="},
		{"an entry enqueued after marking everything is not marked", func() error {
			n := []storage.Notification{notification("sub-a", "a7", 9)}
			if err := s.Enqueue(ctx, n); err != nil {
				return err
			}
			byDelivery["a7"] = n[0]
			return nil
		}, "a5=batch-6 a6=pre a7=", "b1=batch-b b2="},
		{"ack everything", func() error { return s.Ack(ctx, "sub-a", seq("a7")) },
			"", "b1=batch-b b2="},
	}
	for i, st := range steps {
		must(t, st.change(), "step %d (%s)", i, st.name)
		for sub, spec := range map[string]string{"sub-a": st.wantA, "sub-b": st.wantB} {
			want := expect(spec)
			got, err := s.Pending(ctx, sub, 0)
			must(t, err, "Pending(%s) after step %d (%s)", sub, i, st.name)
			wantEqual(t, got, want, "Pending(%s) after step %d (%s)", sub, i, st.name)
			if len(want) > 0 {
				got, err := s.Pending(ctx, sub, 1)
				must(t, err, "Pending(%s, 1) after step %d (%s)", sub, i, st.name)
				wantEqual(t, got, want[:1], "Pending(%s, 1) after step %d (%s)", sub, i, st.name)
			}
			n, err := s.PendingCount(ctx, sub)
			must(t, err, "PendingCount(%s) after step %d (%s)", sub, i, st.name)
			if n != len(want) {
				t.Errorf("PendingCount(%s) after step %d (%s) = %d, want %d", sub, i, st.name, n, len(want))
			}
		}
	}
}
